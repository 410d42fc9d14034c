"""What an expression reads from a bag, finer than its attributes: a map attribute indexed only
by constant keys (``request.headers["x-user"]``) is read at those keys, not as a whole. The check
cache keys on these, so a request id elsewhere in the headers does not make every answer new."""

from __future__ import annotations

from ._nodes import Attr, Binary, Call, Index, Literal, Node, Unary

# An attribute name (read whole), or (map attribute, key) for one entry of a map.
Reference = str | tuple[str, str]


def references(node: Node) -> frozenset[Reference]:
    if isinstance(node, Attr):
        return frozenset((node.name,))
    if isinstance(node, Index):
        if isinstance(node.target, Attr) and isinstance(node.key, Literal) and isinstance(node.key.value, str):
            return frozenset(((node.target.name, node.key.value),))
        return references(node.target) | references(node.key)
    if isinstance(node, Unary):
        return references(node.operand)
    if isinstance(node, Binary):
        return references(node.left) | references(node.right)
    if isinstance(node, Call):
        found: frozenset[Reference] = frozenset()
        for arg in ([node.target] if node.target is not None else []) + node.args:
            found |= references(arg)
        return found
    return frozenset()
