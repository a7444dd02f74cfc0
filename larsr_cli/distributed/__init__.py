"""``larsr upscale`` over a Ray cluster: the same jobs and the same pixels, on a pool of actors.

Why Ray Data: it streams a list of work items through a pool of long-lived actors, each holding
one loaded model, and it restarts an actor whose process dies and retries the task it was running
(``max_restarts`` / ``max_task_retries``). That is exactly the shape of a batch upscale: loading
the four ONNX graphs costs more than a small image, so a model must outlive its images.

Why the pixels match the CLI: the driver plans the jobs with the CLI's own ``plan_jobs`` (same
names, same seeds per file, never per worker) and each actor runs the CLI's own ``run_job`` on its
share: same decoder, same ``Upscaler``, same atomic writer. The texture noise is keyed by seed and
position, so where a job runs cannot change its bytes.

Why a lost worker cannot leave a mess: outputs are written to a temporary name and renamed, so a
killed process leaves at most a hidden ``*.larsr-tmp-*`` file, which the driver deletes once the
run is over. A retried job whose output already appeared (the killed attempt got as far as the
rename) is rendered again and compared: identical bytes count as done, anything else is refused
exactly like the CLI refuses an existing output. Jobs whose output existed before the run are
decided on the driver, with the CLI's rules, before any work is sent out; so ``--skip-existing``
resumes a stopped run.

Ray is optional (``pip install 'larsr[ray]'``) and imported only here, only when asked for.
"""

from __future__ import annotations

from .api import upscale_on_ray
from .cluster import DEFAULT_TASK_RETRIES, RAY_MIN_VERSION, ClusterOptions, connect, import_ray
from .plan import plan_cluster_jobs, worker_model_ref
from .progress import progress_bar
from .run import ClusterSummary, ProgressFn, run_dataset, run_jobs
from .store import OutputStore, is_uri
from .worker import UpscaleWorker

__all__ = [
    "DEFAULT_TASK_RETRIES",
    "RAY_MIN_VERSION",
    "ClusterOptions",
    "ClusterSummary",
    "OutputStore",
    "ProgressFn",
    "UpscaleWorker",
    "connect",
    "import_ray",
    "is_uri",
    "plan_cluster_jobs",
    "progress_bar",
    "run_dataset",
    "run_jobs",
    "upscale_on_ray",
    "worker_model_ref",
]
