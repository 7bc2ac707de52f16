"""modeling_ast: the Audio Spectrogram Transformer as a first-class Hugging Face Transformers model.

Importing the package registers model_type "ast" with transformers' Auto classes (AutoConfig, AutoModel,
AutoModelForAudioClassification, AutoFeatureExtractor) and the audio-classification pipeline.
"""

from . import registration
from .configuration_ast import ASTConfig
from .feature_extraction_ast import ASTFeatureExtractor
from .modeling_ast import ASTForAudioClassification, ASTModel, ASTPreTrainedModel
from .modeling_ast_frames import ASTForAudioFrameClassification

registration.register()

__all__ = [
    "ASTConfig",
    "ASTFeatureExtractor",
    "ASTForAudioClassification",
    "ASTForAudioFrameClassification",
    "ASTModel",
    "ASTPreTrainedModel",
]
