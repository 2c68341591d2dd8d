"""One progress display per run: the libraries' own bars and chatter are switched off while plinth runs.

transformers ("Loading weights", "Writing model shards", GGUF de-quantising), datasets ("Map", "Tokenizing") and
trl ("Computing reference log probs") each draw a tqdm bar of their own, interleaved with plinth's stage lines.
`quiet_libraries()` turns them off through the switches the libraries read (environment variables, read when
tqdm / transformers / datasets are first imported, which happens after a run starts; and their disable functions
when they are already imported), so nothing is patched. Long loops that matter (trl's reference log-probs) are
folded into plinth's display by the plugin that runs them (`plinth.lm.training.fold_tqdm`).

`PLINTH_LIBRARY_BARS=1` keeps the libraries' bars (to debug a library).
"""

from __future__ import annotations

import os
import sys
import warnings

# deprecation notices libraries raise about their own internal calls (trl calling transformers' renamed
# `is_gradient_checkpointing`): addressed to their developers, nothing a user of plinth can change
LIBRARIES = r"(transformers|trl|accelerate|datasets|peft|deepspeed|huggingface_hub)(\.|$)"

# env var -> value; each library reads its own when imported (tqdm's TQDM_* defaults, huggingface_hub's switch,
# which transformers' bars follow, datasets' switch, and the two libraries' log levels)
SWITCHES = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def quiet_libraries() -> None:
    """Silence third-party progress bars and advisory logs for this process and the workers it starts."""
    if os.environ.get("PLINTH_LIBRARY_BARS", "") not in ("", "0"):
        return
    for key, value in SWITCHES.items():
        os.environ.setdefault(key, value)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)
    # libraries imported before the run started read their switch already: use their own functions
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
