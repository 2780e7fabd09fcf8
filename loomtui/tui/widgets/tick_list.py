"""A SelectionList whose unticked boxes are empty: Textual draws an X in every box and tells them
apart by colour alone, which a monochrome terminal, a screen capture or a colour-blind reader
cannot see."""

from __future__ import annotations

from typing import Generic, TypeVar

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList
from textual.widgets.option_list import OptionDoesNotExist

SelectionType = TypeVar("SelectionType")


class TickList(SelectionList[SelectionType], Generic[SelectionType]):
    """`SelectionList` with `▐X▌` for a chosen option and `▐ ▌` for one that is not."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        try:
            option = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return strip
        segments = list(strip)
        # The box's inside, between its two half blocks (checked: a Textual that draws it otherwise
        # keeps its own drawing rather than losing a character of the prompt).
        if option.value in self.selected or len(segments) < 2 or segments[1].text != Checkbox.BUTTON_INNER:
            return strip
        box = segments[1]
        segments[1] = Segment(" " * len(box.text), box.style, box.control)
        return Strip(segments, strip.cell_length)
