# The public API, each name once: `__init__.py` reads this file to load each lazily, and type
# checkers and editors read it for the types. Grouped by what a user does.
from astroclassify import datasets as datasets
from astroclassify._version import __version__ as __version__

# scale and serve
from astroclassify.batching.batch import BatchResult as BatchResult
from astroclassify.batching.batch import batch as batch

# load, predict, explain
from astroclassify.classifier import Classifier as Classifier
from astroclassify.classifier import FailedPrediction as FailedPrediction
from astroclassify.classifier import Prediction as Prediction
from astroclassify.config import DecodeLimits as DecodeLimits
from astroclassify.config import Folders as Folders

# discovery
from astroclassify.discovery.collection import anomaly_map as anomaly_map
from astroclassify.discovery.collection import anomaly_ranking as anomaly_ranking
from astroclassify.discovery.collection import export_marks as export_marks
from astroclassify.discovery.collection import mark_image as mark_image
from astroclassify.discovery.collection import similar_images as similar_images
from astroclassify.discovery.evaluation import AnomalyEvaluation as AnomalyEvaluation
from astroclassify.discovery.evaluation import Simulation as Simulation
from astroclassify.discovery.evaluation import evaluate_anomalies as evaluate_anomalies
from astroclassify.discovery.evaluation import simulate_marks as simulate_marks
from astroclassify.discovery.fitting import AnomalyFit as AnomalyFit
from astroclassify.discovery.fitting import fit_anomalies as fit_anomalies

# errors
from astroclassify.errors import AstroClassifyError as AstroClassifyError
from astroclassify.errors import AstroClassifyWarning as AstroClassifyWarning
from astroclassify.errors import ConfigError as ConfigError
from astroclassify.errors import DataError as DataError
from astroclassify.errors import FileTooLargeError as FileTooLargeError
from astroclassify.errors import IdempotencyKeyReusedError as IdempotencyKeyReusedError
from astroclassify.errors import ImageDecodeError as ImageDecodeError
from astroclassify.errors import IngestError as IngestError
from astroclassify.errors import MissingExtraError as MissingExtraError
from astroclassify.errors import ModelError as ModelError
from astroclassify.errors import NotFittedError as NotFittedError
from astroclassify.errors import RecordNotFoundError as RecordNotFoundError
from astroclassify.errors import StoreError as StoreError
from astroclassify.errors import UnknownNameError as UnknownNameError

# train, evaluate, ensembles, INT8
from astroclassify.evaluation.evaluate import Evaluation as Evaluation
from astroclassify.evaluation.evaluate import evaluate as evaluate
from astroclassify.evaluation.finish import refresh_model_card as refresh_model_card
from astroclassify.inference.detectors import Detector as Detector
from astroclassify.inference.predictor import Explanation as Explanation

# archives: store, ingest, watch, export
from astroclassify.ingestion.catalog import make_source as make_source
from astroclassify.ingestion.catalog import register_source as register_source
from astroclassify.ingestion.run import IngestOptions as IngestOptions
from astroclassify.ingestion.run import IngestResult as IngestResult
from astroclassify.ingestion.run import ingest as ingest
from astroclassify.ingestion.sources import SourceOptions as SourceOptions
from astroclassify.ingestion.watch import watch as watch
from astroclassify.installation import Installation as Installation
from astroclassify.installation import load as load

# models: trained ones by name and version, architectures, taxonomies
from astroclassify.learning.loop import LearnResult as LearnResult
from astroclassify.learning.loop import learn as learn
from astroclassify.learning.loop import learn_history as learn_history
from astroclassify.learning.promotion import Comparison as Comparison
from astroclassify.modelfolder.folder import ModelEntry as ModelEntry

# exported under another name than their module's
from astroclassify.modelfolder.folder import available_models
from astroclassify.modelfolder.folder import model_versions as model_versions
from astroclassify.modelfolder.folder import rollback_model as rollback_model
from astroclassify.modelfolder.folder import use_model_version as use_model_version
from astroclassify.modelfolder.versions import VersionInfo as VersionInfo
from astroclassify.models import create_model as create_model
from astroclassify.models import list_models as _list_architectures
from astroclassify.net.http import PoliteClient as PoliteClient
from astroclassify.preparation.taxonomy import Taxonomy as Taxonomy
from astroclassify.preparation.taxonomy import builtin_taxonomies
from astroclassify.preparation.taxonomy import load_taxonomy as load_taxonomy
from astroclassify.store import Store as Store
from astroclassify.store import open_store as open_store
from astroclassify.store.api_keys import create_api_key as create_api_key
from astroclassify.store.api_keys import list_api_keys as list_api_keys
from astroclassify.store.api_keys import revoke_api_key as revoke_api_key
from astroclassify.store.export import ExportResult as ExportResult
from astroclassify.store.export import export_dataset as export_dataset
from astroclassify.store.export import export_feedback as export_feedback
from astroclassify.training.config import HeadSpec as HeadSpec
from astroclassify.training.config import TrainConfig as TrainConfig
from astroclassify.training.crossval import CVResult as CVResult
from astroclassify.training.crossval import cross_validate as cross_validate
from astroclassify.training.ensemble import EnsembleResult as EnsembleResult
from astroclassify.training.ensemble import build_ensemble as build_ensemble
from astroclassify.training.loop import TrainingPaused as TrainingPaused
from astroclassify.training.multitask import EncoderConfig as EncoderConfig
from astroclassify.training.multitask import EncoderResult as EncoderResult
from astroclassify.training.multitask import load_encoder_recipe as load_encoder_recipe
from astroclassify.training.multitask import train_encoder as train_encoder
from astroclassify.training.quantize import QuantizeResult as QuantizeResult
from astroclassify.training.quantize import quantize_model
from astroclassify.training.train import TrainResult as TrainResult
from astroclassify.training.train import train as train
from astroclassify.web.server import serve as serve

list_models = available_models
list_architectures = _list_architectures
list_taxonomies = builtin_taxonomies
quantize = quantize_model
