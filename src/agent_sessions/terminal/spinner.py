"""A spinner with the elapsed time while nothing else is shown: the model thinking, a tool
running (with the last lines of a running command's output under it). Only on a terminal:
piped output gets no spinner and no control codes."""

from __future__ import annotations

import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

OUTPUT_LINES = 6
"""Lines of a running command's output shown under the spinner."""


class Waiting:
    """``set("thinking")`` shows (or keeps) the spinner, ``set(None)`` clears it. The elapsed
    time counts from when the label last changed, so a long tool call shows how long it runs."""

    def __init__(self, console: Console) -> None:
        self.enabled = console.is_terminal
        self._console = console
        self._label: str | None = None
        self._since = 0.0
        self._spinner = Spinner("dots", style="cyan")
        self._live: Live | None = None
        self._output: list[str] = []

    def _render(self) -> RenderableType:
        elapsed = time.monotonic() - self._since
        self._spinner.update(text=f"{self._label}… {elapsed:.0f}s")
        if not self._output:
            return self._spinner
        width = max(10, self._console.width - 4)
        lines = [Text("    " + line[:width], style="dim", no_wrap=True) for line in self._output]
        return Group(self._spinner, *lines)

    def output(self, text: str) -> None:
        """The running command's latest output (its last lines stay under the spinner until
        the label changes)."""
        self._output = text.rstrip("\n").splitlines()[-OUTPUT_LINES:]
        if self._live is not None:
            self._live.refresh()  # now, not at the next tick

    def set(self, label: str | None) -> None:
        if not self.enabled or label == self._label:
            return
        self._output = []
        if label is None:
            if self._live is not None:
                self._live.stop()  # transient: its last frame is erased
                self._live = None
            self._label = None
            return
        self._label, self._since = label, time.monotonic()
        if self._live is None:
            self._live = Live(
                console=self._console,
                get_renderable=self._render,
                refresh_per_second=8,
                transient=True,  # cleared when output arrives
            )
            self._live.start()

    def clear(self) -> None:
        self.set(None)
