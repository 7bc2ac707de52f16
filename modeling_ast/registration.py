"""Registers model_type "ast" with transformers' Auto classes, the audio-classification pipeline and the new
"sound-event-detection" task (on import), and
installs the reader of transformers' built-in AST checkpoints.

Why a reader installed here rather than transformers' own load-time conversions
(`register_checkpoint_conversion_mapping` with `WeightConverter`s): those are looked up by the loading model's
model_type, so they would apply to every "ast" checkpoint, and `save_pretrained` runs them backwards (5.0 and 5.2x
alike), so a model loaded from a built-in checkpoint would be saved in the built-in key layout under our config. The
built-in checkpoints differ from ours by a key table and a q/k/v fusion (`conversion.layouts`), which
`conversion.transformers_ast.read_transformers_weights` applies in memory when, and only when, the source's
config.json says model_type "audio-spectrogram-transformer"; `ASTConfig` reads that config.json itself.
`modeling_ast.py` only knows that a `checkpoint_reader` may be installed, so it ships as Hub remote code without the
converters (and then loads our layout only).
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForAudioFrameClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_ast import ASTConfig
from .conversion.transformers_ast import read_transformers_weights
from .feature_extraction_ast import ASTFeatureExtractor
from .modeling_ast import ASTForAudioClassification, ASTModel, ASTPreTrainedModel
from .modeling_ast_frames import ASTForAudioFrameClassification
from .pipeline_ast import ASTAudioClassificationPipeline
from .pipeline_sed import SoundEventDetectionPipeline

SOUND_EVENT_DETECTION = "sound-event-detection"

__all__ = ["register"]


def register() -> None:
    """Idempotent: safe to call more than once (exist_ok)."""
    AutoConfig.register(ASTConfig.model_type, ASTConfig, exist_ok=True)
    AutoModel.register(ASTConfig, ASTModel, exist_ok=True)
    AutoModelForAudioClassification.register(ASTConfig, ASTForAudioClassification, exist_ok=True)
    AutoModelForAudioFrameClassification.register(ASTConfig, ASTForAudioFrameClassification, exist_ok=True)
    AutoFeatureExtractor.register(ASTConfig, ASTFeatureExtractor, exist_ok=True)
    # Swap only the implementation class, keeping the task's default model and type; register_pipeline would
    # replace the whole entry and log an "Overwriting" warning on every import.
    PIPELINE_REGISTRY.supported_tasks["audio-classification"]["impl"] = ASTAudioClassificationPipeline
    if SOUND_EVENT_DETECTION not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(
            SOUND_EVENT_DETECTION,
            pipeline_class=SoundEventDetectionPipeline,
            pt_model=AutoModelForAudioFrameClassification,
            type="audio",
        )
    ASTPreTrainedModel.checkpoint_reader = staticmethod(read_transformers_weights)
