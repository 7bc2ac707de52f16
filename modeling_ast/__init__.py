"""modeling_ast: the Audio Spectrogram Transformer as a first-class Hugging Face Transformers model.

Importing the package registers model_type "ast" with the Auto classes and the audio-classification pipeline.
"""

from .configuration_ast import ASTConfig
from .modeling_ast import ASTForAudioClassification, ASTModel, ASTPreTrainedModel

__all__ = ["ASTConfig", "ASTForAudioClassification", "ASTModel", "ASTPreTrainedModel"]
