"""The installation: one object, built from ``Settings``, that wires what the CLI, the web app and batch use.

The library's functions take what they need as arguments (a store, a predictor, a models
folder, limits); this is the one place that turns an installation's settings into those
objects, so the command line, the web app and a notebook get the same store, the same
model resolution, the same limits and the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astroclassify.config import DecodeLimits, Folders, Settings, get_settings

if TYPE_CHECKING:
    from astroclassify.classifier import Classifier
    from astroclassify.discovery.collection import Discovery
    from astroclassify.inference.pool import PredictorPool
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.modelfolder.folder import Bundle
    from astroclassify.net.alerts import Notifier
    from astroclassify.net.http import PoliteClient
    from astroclassify.store import Store

__all__ = ["Folders", "Installation", "load"]


@dataclass(frozen=True)
class Installation:
    """An installation of astroclassify: its settings and the objects made from them.

    ``Installation.current()`` reads ``ASTROCLASSIFY_*`` now; ``Installation(settings)``
    uses the settings given (tests, an app serving another home).
    """

    settings: Settings

    @classmethod
    def current(cls) -> Installation:
        """The installation the environment describes (``ASTROCLASSIFY_HOME`` and friends)."""
        return cls(get_settings())

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def models_dir(self) -> Path:
        return self.settings.models_dir

    @property
    def data_dir(self) -> Path | None:
        return self.settings.data_dir

    def folders(self) -> Folders:
        """Where this installation looks up names of models and collections."""
        return Folders(self.models_dir, self.data_dir)

    def predictor_options(self) -> dict[str, Any]:
        """What every predictor of this installation is made with: limits, threads and the models folder."""
        return self.settings.predictor_options()

    def predictor(self, model: str | Path = "", *, detector: Path | None = None) -> OnnxPredictor:
        """``model`` (default: the settings' default model), with this installation's limits."""
        from astroclassify.inference.predictor import OnnxPredictor

        return OnnxPredictor(self.settings.model_or_default(model), detector=detector, **self.predictor_options())

    def classifier(self, model: str | Path = "", *, detector: Path | None = None) -> Classifier:
        """``model`` (default: the settings' default model) as the public ``Classifier``, with this installation's limits."""
        from astroclassify.classifier import Classifier

        return Classifier.from_predictor(self.predictor(model, detector=detector))

    def pool(self) -> PredictorPool:
        """Every model by name, the settings' default model (with its detector) answering requests that name none."""
        from astroclassify.inference.pool import PredictorPool

        return PredictorPool(
            str(self.settings.model_or_default(None)),
            detector=self.settings.default_detector,
            **self.predictor_options(),
        )

    def open_store(self) -> Store:
        """The database and image folder (migrated on open); close it, or use it in ``with``."""
        from astroclassify.store import open_store

        return open_store(self.home, self.settings.database_url)

    def discovery(self, store: Store) -> Discovery:
        """The store's look-alikes, rankings and maps, kept for this process (what the web app answers from)."""
        from astroclassify.discovery.collection import Discovery

        return Discovery.of(store)

    def http_client(self, store: Store) -> PoliteClient:
        """The polite client archives are read with: this installation's interval, retries, deadline and cache."""
        from astroclassify.net.http import PoliteClient

        s = self.settings
        return PoliteClient(
            cache_dir=store.home / "cache" / "http",
            min_interval=s.ingest_min_interval,
            max_retries=s.ingest_retries,
            backoff=s.ingest_backoff,
            timeout=s.ingest_timeout,
            max_bytes=s.max_file_bytes,
        )

    def notifiers(
        self,
        webhooks: tuple[str, ...] | list[str] = (),
        files: tuple[Path, ...] | list[Path] = (),
        mailboxes: tuple[Path, ...] | list[Path] = (),
        *,
        log_alerts: bool = True,
    ) -> list[Notifier]:
        from astroclassify.net.alerts import make_notifiers

        return make_notifiers(webhooks=webhooks, files=files, mailboxes=mailboxes, log_alerts=log_alerts)

    def serving_tta(self, bundle: Bundle) -> str:
        """The test-time augmentation web requests get from ``bundle``: the server's choice, else the model's own."""
        return self.settings.serving_tta(bundle.tta)


def load(
    name_or_path: str | Path = "dso",
    *,
    models_dir: Path | None = None,
    detector: str | Path | None = None,
    limits: DecodeLimits | None = None,
    threads: int | None = None,
) -> Classifier:
    """Load a trained model for prediction, with this installation's models folder and limits.

    Parameters
    ----------
    name_or_path : str or Path
        A model name (bundled: ``"dso"``, ``"morphology"``; or a user model in ``models_dir``)
        or a model folder.
    models_dir : Path, optional
        Folder of user models; default: the installation's (``$ASTROCLASSIFY_HOME/models``).
    detector : str or Path, optional
        An anomaly detector folder (``astroclassify anomalies fit --out``); default: the
        model's own, if it has one.
    limits : DecodeLimits, optional
        What one image may cost to decode: larger ones are refused before their pixels are
        decoded (default: the installation's, 50 Mpx and 64 MiB).
    threads : int, optional
        ONNX Runtime threads (0: all cores).

    Returns
    -------
    Classifier
        Fitted: ``predict``, ``predict_proba`` and ``explain`` are ready.

    Raises
    ------
    UnknownNameError
        No model of that name (the message lists close matches).
    """
    from astroclassify.classifier import Classifier

    given = {"models_dir": models_dir, "limits": limits, "threads": threads}
    options = Installation.current().predictor_options() | {k: v for k, v in given.items() if v is not None}
    return Classifier.load(name_or_path, detector=detector, **options)
