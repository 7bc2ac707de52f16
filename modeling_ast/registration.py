"""Registers model_type "ast" with transformers' Auto classes and the audio-classification pipeline (on import)."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_ast import ASTConfig
from .feature_extraction_ast import ASTFeatureExtractor
from .modeling_ast import ASTForAudioClassification, ASTModel
from .pipeline_ast import ASTAudioClassificationPipeline


def register() -> None:
    """Idempotent: safe to call more than once (exist_ok)."""
    AutoConfig.register(ASTConfig.model_type, ASTConfig, exist_ok=True)
    AutoModel.register(ASTConfig, ASTModel, exist_ok=True)
    AutoModelForAudioClassification.register(ASTConfig, ASTForAudioClassification, exist_ok=True)
    AutoFeatureExtractor.register(ASTConfig, ASTFeatureExtractor, exist_ok=True)
    # Swap only the implementation class, keeping the task's default model and type; register_pipeline would
    # replace the whole entry and log an "Overwriting" warning on every import.
    PIPELINE_REGISTRY.supported_tasks["audio-classification"]["impl"] = ASTAudioClassificationPipeline
