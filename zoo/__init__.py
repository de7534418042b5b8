"""Model zoo: restoration networks as plain PyTorch modules (no Ray, no MLflow)."""
from zoo.contract import Conditioning, LossTerms, RestorationModel, TrainingStage
from zoo.factory import MODELS, ModelSpec, create_model, list_models, model_config, parameter_count, register_model
from zoo.registry import Registry, UnknownNameError

# Importing a model module registers it.
from zoo import hair_hosts, hyperres, identity, nafnet, promptir, restormer  # noqa: E402,F401
from zoo import airnet, daair  # noqa: E402,F401
from zoo import ads  # noqa: E402,F401

__all__ = [
    "Conditioning",
    "LossTerms",
    "MODELS",
    "ModelSpec",
    "Registry",
    "RestorationModel",
    "TrainingStage",
    "UnknownNameError",
    "create_model",
    "list_models",
    "model_config",
    "parameter_count",
    "register_model",
]
