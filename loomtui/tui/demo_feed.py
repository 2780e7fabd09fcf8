"""The demo inside the app: the scenario runs on the real engines in worker threads, and the app shows
what they do (the sandboxes table, their logs, the queue); only the story's chapters and its warnings
are said on top."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from loomtui.errors import LoomError
from loomtui.tui.keys import shown_key, view_number

if TYPE_CHECKING:
    from loomtui.tui.app import LoomApp

DEMO_TOAST_SECONDS: Final = 6.0
ADVANCE_EVERY_S: Final = 1.5


class DemoFeed:
    """Starts the demo's scenario and advances it, off the UI thread."""

    def __init__(self, app: LoomApp) -> None:
        self.app = app
        self._chapter = ""
        """The story's chapter last worked out here (the start's are said by the scenario)."""

    def start(self) -> None:
        """Start the scenario, then advance it every ADVANCE_EVERY_S."""
        self.app.run_worker(self._start, name="demo start", thread=True, group="demo", exit_on_error=False)
        self.app.set_interval(ADVANCE_EVERY_S, self._advance)

    def _start(self) -> None:
        from loomtui.demo.scenario import start_scenario

        try:
            start_scenario(self.app.workspace, on_step=self.say)
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title="demo", severity="error")

    def _advance(self) -> None:
        self.app.run_worker(self._advance_scenario, name="demo advance", thread=True, exclusive=True,
                            group="demo-advance", exit_on_error=False)

    def _advance_scenario(self) -> None:
        from loomtui.demo.scenario import advance_scenario, scenario_chapter

        try:
            said = advance_scenario(self.app.workspace, on_step=self.say)
            if said or not self._chapter:  # a chapter moves only when something happened
                self._show_chapter(scenario_chapter(self.app.workspace))
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title="demo", severity="error")

    def _show_chapter(self, chapter: str) -> None:
        """Into every header; the end is said too (the story stopped without a word, the header still
        saying the agents were at work)."""
        from loomtui.demo.scenario import END_CHAPTER

        if chapter == self._chapter:
            return
        self._chapter = chapter
        self.app.call_from_thread(self.app.set_demo_chapter, chapter)
        if chapter.startswith(END_CHAPTER):
            audit, metrics = (shown_key(f"app.mode.{mode}", str(view_number(mode))) for mode in ("audit", "metrics"))
            leave = shown_key("app.quit", "q")
            self.app.call_from_thread(
                self.app.notify, f"The demo is over{chapter.removeprefix(END_CHAPTER)}: the audit log ({audit}) "
                f"has each step, the metrics ({metrics}) the figures; {leave} quits", title="demo",
                timeout=DEMO_TOAST_SECONDS * 2)

    def say(self, line: str) -> None:
        """A scenario step worth interrupting for, as a notification (called from worker threads)."""
        from loomtui.demo.scenario import DEMO_REVIEWERS

        text = line.strip()
        colleague = next((who for who in DEMO_REVIEWERS if f"] {who} approves escalation" in text), None)
        if colleague is not None:
            # After the person's approval a colleague's follows (payments changes need two): unsaid, the
            # row vanished as approved on one `a` that needed two.
            said = text.split("] ", 1)[-1]
            self.app.call_from_thread(self.app.notify, f"{said}: the demo's second payments reviewer "
                                      "approved after you (payments changes need two)", title="demo",
                                      timeout=DEMO_TOAST_SECONDS)
        elif text.startswith("=="):  # a chapter of the story: into every header, not one more toast
            self.app.call_from_thread(self.app.set_demo_chapter, text.strip("= "))
        elif "WARNING" in text or "HIGH" in text:
            # Not "-> escalation" nor "merged": the app's own toasts say those (an escalation waiting,
            # coalesced; a decision and what followed it), and the table shows each status. Without the
            # regions (the Claims tab has them): two at the start took 8 of 24 rows over the detail.
            if " -references-> " in text and "): " in text:
                text = text.split("): ", 1)[0] + ")"
            self.app.call_from_thread(self.app.notify, text, title="demo", severity="warning",
                                      timeout=DEMO_TOAST_SECONDS)
