"""A Tree whose rows fit its width, as the fitted tables' do: a label too long for the room its
guides leave ends in `…`, rather than being cut off mid-word with nothing to say more follows."""

from __future__ import annotations

from typing import TypeVar

from rich.style import Style
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from loomtui.tui.visible import visible_text

NodeData = TypeVar("NodeData")


class FittedTree(Tree[NodeData]):
    """`Tree`, each label cut with … to the width left beside its guides (a resize re-fits them)."""

    def render_label(self, node: TreeNode[NodeData], base_style: Style, style: Style) -> Text:
        label = visible_text(super().render_label(node, base_style, style))  # an agent's words: no control
        room = self.scrollable_content_region.width - self._guide_width(node)
        if room > 0 and label.cell_len > room:  # no room yet (before the first layout): left whole
            label.truncate(room, overflow="ellipsis")
        return label

    def _guide_width(self, node: TreeNode[NodeData]) -> int:
        """The cells of guides before `node`'s label: one `guide_depth` per level below the top row."""
        levels = 0
        parent = node.parent
        while parent is not None and (parent is not self.root or self.show_root):
            levels += 1
            parent = parent.parent
        return levels * self.guide_depth
