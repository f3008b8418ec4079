"""Push exported tasks to a running Label Studio server and pull the annotations back.

Written against label-studio-sdk 2.1.2 and Label Studio 1.23. The server address
and the API key come from the environment (``LABEL_STUDIO_URL``,
``LABEL_STUDIO_API_KEY``); the key is handed to the SDK only and never logged.
Both a personal access token (a JWT, the default in Label Studio 1.23) and a
legacy token work, because the SDK detects which kind the key is.
"""

from __future__ import annotations

import json
import logging
import os
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from shapnoise.io import atomic_path
from shapnoise.labelling import (
    CONFIG_FILE,
    TASKS_FILE,
    export_bytes,
    normalize_export,
    task_source_ids,
)

log = logging.getLogger(__name__)

URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"
DEFAULT_URL = "http://localhost:8080"
DEFAULT_TITLE = "shapnoise {split} noise"
EXPORT_FILE = "labelstudio-export.json"

T = TypeVar("T")


class LabelStudioError(RuntimeError):
    """A failed exchange with the Label Studio server, with the URL and what to do next."""


def read_environment(environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """Return the server URL and the API key from the environment."""
    url = environ.get(URL_ENV) or DEFAULT_URL
    api_key = environ.get(KEY_ENV, "").strip()
    if not api_key:
        raise LabelStudioError(
            f"{KEY_ENV} is not set. In Label Studio open Account & Settings, copy the access token "
            f"(personal access token or legacy token) and run `export {KEY_ENV}=<token>` in this shell"
        )
    return url, api_key


def _detail(error: ApiError) -> str:
    body = error.body
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("validation_errors") or body)
    return str(body)[:500]


def _same_config(first: str, second: str) -> bool:
    """Compare two labelling configs while ignoring indentation and attribute order."""
    try:
        return ET.canonicalize(first, strip_text=True) == ET.canonicalize(second, strip_text=True)
    except ET.ParseError:
        return first.strip() == second.strip()


class Server:
    """A Label Studio server reached through the SDK, with bounded retries and errors that name the URL."""

    def __init__(self, url: str, api_key: str, timeout: float = 60.0, retries: int = 3):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        try:
            # The SDK's own retries are off, so that call() alone decides what is retried.
            self.client = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0)
        except ApiError as error:
            raise self._api_error(error, "read the API key") from error

    def _api_error(self, error: ApiError, action: str) -> LabelStudioError:
        if error.status_code in (401, 403):
            return LabelStudioError(
                f"Label Studio at {self.url} rejected the API key from {KEY_ENV} (HTTP {error.status_code}: "
                f"{_detail(error)}). Copy a valid access token from Account & Settings; a legacy token "
                "works only where the organization enables legacy tokens"
            )
        return LabelStudioError(
            f"Label Studio at {self.url} failed to {action} (HTTP {error.status_code}: {_detail(error)})"
        )

    def call(self, action: str, request: Callable[[], T], idempotent: bool = True) -> T:
        """Run ``request``, retrying failed connections, timeouts and 5xx/429 responses ``self.retries`` times.

        A request that is not idempotent (creating a project, importing tasks)
        is retried only when the connection failed before anything was sent,
        because after a timeout the server may still complete the first try.
        """
        attempts = 1 + self.retries
        for attempt in range(1, attempts + 1):
            try:
                return request()
            except (httpx.TransportError, ApiError) as error:
                retryable, failure = self._classify(error, idempotent)
                if not retryable or attempt == attempts:
                    raise self._final_error(error, action, attempt, idempotent) from error

            delay = min(2.0 ** (attempt - 1), 10.0)
            log.warning("%s at %s: %s; retry %d of %d in %.0f s",
                        action, self.url, failure, attempt, self.retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _classify(self, error: Exception, idempotent: bool) -> tuple[bool, str]:
        """Return whether ``error`` may be retried, and a short description for the log."""
        if isinstance(error, httpx.ConnectError):
            # Nothing reached the server, so even a non-idempotent request is safe to send again.
            return True, f"cannot connect ({error})"
        if isinstance(error, httpx.TimeoutException):
            return idempotent, f"no answer within {self.timeout:g} s"
        if isinstance(error, httpx.TransportError):
            return idempotent, f"network error ({error})"
        status = error.status_code or 0
        return idempotent and (status >= 500 or status == 429), f"HTTP {status}"

    def _final_error(self, error: Exception, action: str, attempts: int, idempotent: bool) -> LabelStudioError:
        if isinstance(error, ApiError):
            return self._api_error(error, action)
        if isinstance(error, httpx.ConnectError):
            return LabelStudioError(
                f"cannot connect to Label Studio at {self.url} to {action} ({error}, {attempts} attempts). "
                f"Start the server (label-studio start) or set {URL_ENV} to its address"
            )
        if not idempotent:
            return LabelStudioError(
                f"request to Label Studio at {self.url} to {action} failed ({type(error).__name__}: {error}). "
                "The server may still complete the request, so it is not sent again; run the command again, "
                "it adds only what is missing"
            )
        if isinstance(error, httpx.TimeoutException):
            return LabelStudioError(
                f"request to Label Studio at {self.url} to {action} timed out after {self.timeout:g} s "
                f"({attempts} attempts); check that the server is running and not overloaded, or raise --timeout"
            )
        return LabelStudioError(f"network error talking to Label Studio at {self.url} to {action} "
                                f"({attempts} attempts): {error}")

    def find_project(self, title: str) -> Any | None:
        """Return the one project titled exactly ``title``, or None."""
        # The title filter of the projects API matches substrings, so compare exactly here.
        projects = self.call(f"list the projects titled {title!r}",
                             lambda: list(self.client.projects.list(title=title)))
        matches = [project for project in projects if project.title == title]
        if len(matches) > 1:
            ids = ", ".join(str(project.id) for project in matches)
            raise LabelStudioError(
                f"Label Studio at {self.url} has {len(matches)} projects titled {title!r} (ids {ids}); "
                "delete or rename all but one, or choose another title with --title"
            )
        return matches[0] if matches else None

    def ensure_project(self, title: str, config: str, config_path: Path, description: str,
                       model_version: str) -> int:
        """Return the id of the project titled ``title``, creating it when missing.

        An existing project must have the same labelling config, because
        annotations made under another config would not mean the same labels.
        """
        project = self.find_project(title)
        if project is None:
            created = self.call(
                f"create project {title!r}",
                lambda: self.client.projects.create(
                    title=title,
                    label_config=config,
                    description=description,
                    # Shows the generator's prediction preselected, from the predictions of this model version.
                    show_collab_predictions=True,
                    model_version=model_version,
                ),
                idempotent=False,
            )
            log.info("created project %r (id %d) at %s", title, created.id, self.url)
            return created.id

        if not _same_config(project.label_config or "", config):
            raise LabelStudioError(
                f"project {title!r} (id {project.id}) at {self.url} has another labelling config than "
                f"{config_path}. Changing it could invalidate the annotations made so far, so push stops. "
                "Compare the two in the project's Settings > Labeling Interface; then either update the "
                "project's config by hand or push into a new project with --title"
            )
        log.info("reusing project %r (id %d) at %s", title, project.id, self.url)
        return project.id

    def existing_source_ids(self, project_id: int) -> Counter:
        """Count the tasks of a project per source id."""
        tasks = self.call(
            f"list the tasks of project {project_id}",
            lambda: list(self.client.tasks.list(project=project_id, fields="task_only", include="id,data",
                                                page_size=1000)),
        )
        return Counter((task.data or {}).get("source_id") for task in tasks)

    def export_tasks(self, project_id: int) -> list[dict]:
        """Return every task of a project in Label Studio's JSON export format."""
        raw = self.call(
            f"export project {project_id}",
            lambda: b"".join(self.client.projects.exports.download_sync(
                project_id, export_type="JSON", download_all_tasks=True)),
        )
        try:
            tasks = json.loads(raw)
        except json.JSONDecodeError as error:
            raise LabelStudioError(
                f"Label Studio at {self.url} returned an export of project {project_id} that is not JSON ({error})"
            ) from error
        if not isinstance(tasks, list):
            raise LabelStudioError(
                f"Label Studio at {self.url} returned an export of project {project_id} that is not a list of tasks"
            )
        return tasks


@dataclass(frozen=True)
class PushResult:
    project_id: int
    imported: int
    already_present: int
    not_in_export: int


def push_split(server: Server, export_dir: str | os.PathLike, split: str, title: str,
               batch_size: int = 500) -> PushResult:
    """Create or reuse the split's project and import the tasks it does not have yet, matched by source id."""
    export_dir = Path(export_dir) / split
    tasks_path = export_dir / TASKS_FILE
    config_path = export_dir / CONFIG_FILE
    for path in (tasks_path, config_path):
        if not path.exists():
            raise FileNotFoundError(f"{path}: file not found; run the export stage first (dvc repro labelstudio_export)")
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    config = config_path.read_text(encoding="utf-8")
    wrong = [task["data"]["source_id"] for task in tasks if task["data"].get("split") != split]
    if wrong:
        raise ValueError(f"{tasks_path}: {len(wrong)} tasks are not from the {split} split (first: {wrong[0]}); "
                         "rerun the export stage (dvc repro --force labelstudio_export)")
    model_versions = {prediction["model_version"] for task in tasks for prediction in task.get("predictions", [])}
    model_version = sorted(model_versions)[0] if model_versions else ""

    description = (f"SHAP noise images of the MNIST {split} split that the generator misclassifies; "
                   f"tasks from {tasks_path}")
    project_id = server.ensure_project(title, config, config_path, description, model_version)

    present = server.existing_source_ids(project_id)
    wanted = {task["data"]["source_id"] for task in tasks}
    missing = [task for task in tasks if task["data"]["source_id"] not in present]
    for start in range(0, len(missing), batch_size):
        batch = missing[start:start + batch_size]
        server.call(f"import {len(batch)} tasks into project {project_id}",
                    lambda batch=batch: server.client.projects.import_tasks(project_id, request=batch),
                    idempotent=False)
        log.info("%s: imported tasks %d to %d of %d", split, start + 1, start + len(batch), len(missing))

    duplicated = sorted(key for key, count in present.items() if count > 1)
    if duplicated:
        log.warning("%s: %d source ids appear in several tasks of project %d (first: %s); "
                    "the import stage pools their annotations", split, len(duplicated), project_id, duplicated[0])
    not_in_export = sum(count for key, count in present.items() if key not in wanted)
    if not_in_export:
        log.warning("%s: %d tasks of project %d are not in %s (images of an earlier filter run); "
                    "they stay in the project and pull leaves them out", split, not_in_export, project_id, tasks_path)
    result = PushResult(project_id, len(missing), len(tasks) - len(missing), not_in_export)
    log.info("%s: project %r (id %d): %d tasks imported, %d already there",
             split, title, project_id, result.imported, result.already_present)
    return result


def pull_split(server: Server, export_dir: str | os.PathLike, labels_dir: str | os.PathLike, split: str,
               title: str, keep_images: bool = False) -> tuple[Path, bool]:
    """Write the split's annotations as ``labels/<split>/labelstudio-export.json``; return it and whether it changed.

    The file is rewritten only when its bytes would change, so a pull with
    nothing new leaves it, and its modification time, untouched.
    """
    known = task_source_ids(Path(export_dir) / split / TASKS_FILE)
    project = server.find_project(title)
    if project is None:
        raise LabelStudioError(
            f"Label Studio at {server.url} has no project titled {title!r}; "
            "run `shapnoise labelstudio push` first, or pass the title used then with --title"
        )

    tasks, stale = normalize_export(server.export_tasks(project.id), known, keep_images)
    if stale:
        log.warning("%s: left out %d tasks of project %d whose images are not in the current %s",
                    split, stale, project.id, TASKS_FILE)
    content = export_bytes(tasks)

    target = Path(labels_dir) / split / EXPORT_FILE
    if target.exists() and target.read_bytes() == content:
        log.info("%s: %s unchanged (%d annotated tasks)", split, target, len(tasks))
        return target, False
    with atomic_path(target) as tmp:
        tmp.write_bytes(content)
    log.info("%s: wrote %d annotated tasks to %s", split, len(tasks), target)
    return target, True
