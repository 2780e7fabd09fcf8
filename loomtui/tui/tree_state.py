"""A Tree's opened and closed nodes and its cursor, kept across a rebuild from fresh data: the claims and
plan trees are built again at every store event, and a node a person closed opened again and the cursor
went back to the first task (with agents running, events come every second)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from textual.widgets import Tree
from textual.widgets.tree import TreeNode

NodePath: TypeAlias = tuple[str, ...]


def label_key(node: TreeNode[Any]) -> str:
    """A node named by its label as shown (a caller whose labels change, a status in them, names them
    otherwise)."""
    label = node.label
    return label if isinstance(label, str) else label.plain


@dataclass(frozen=True)
class TreeState:
    """Which nodes were open and which closed (those that can open), and where the cursor was."""

    opened: frozenset[NodePath]
    closed: frozenset[NodePath]
    cursor: NodePath | None


def _walk(node: TreeNode[Any], key: Callable[[TreeNode[Any]], str],
          above: NodePath = ()) -> Iterator[tuple[NodePath, TreeNode[Any]]]:
    for child in node.children:
        path = (*above, key(child))
        yield path, child
        yield from _walk(child, key, path)


def tree_state(tree: Tree[Any], key: Callable[[TreeNode[Any]], str] = label_key) -> TreeState:
    """What `restore_tree_state` puts back."""
    opened: set[NodePath] = set()
    closed: set[NodePath] = set()
    cursor: NodePath | None = None
    for path, node in _walk(tree.root, key):
        if node.allow_expand:
            (opened if node.is_expanded else closed).add(path)
        if node is tree.cursor_node:
            cursor = path
    return TreeState(frozenset(opened), frozenset(closed), cursor)


def restore_tree_state(tree: Tree[Any], state: TreeState,
                       key: Callable[[TreeNode[Any]], str] = label_key) -> TreeNode[Any] | None:
    """Open and close the rebuilt tree's nodes as they were; the node the cursor was on, if it is there
    still (moved to by the caller once the tree is laid out)."""
    at = None
    for path, node in _walk(tree.root, key):
        if path in state.closed and node.is_expanded:
            node.collapse()
        elif path in state.opened and not node.is_expanded and node.allow_expand:
            node.expand()
        if path == state.cursor:
            at = node
    return at
