"""What decays is decided in one place, :class:`decaylab.groups.DecayRule`: a static check of every module.

A second implementation of the rule is a function that enumerates a model's parameters (or modules) *and*
names weight decay *and* tells them apart by what the rule looks at — shape (``p.dim() >= 2``, ``p.ndim``,
``len(p.shape)``, ``p.numel()`` compared), name (``"bias"``/``"norm"``/``"embed"`` tested against a name) or
owner type (``isinstance(m, nn.LayerNorm)``, ``NORM_TYPES``) — or any use of :func:`classify_parameters`
(DecayRule's thin public wrapper, kept for users) or of the rule's private helpers outside ``groups.py``.
All three conditions together keep the false alarms out: an optimizer's step that treats matrices apart
(Muon-style ``p.ndim >= 2``) reads ``group["params"]``, not a model's; the batched trainer's
``p.dim() - 1`` is arithmetic, not a comparison; a layer's ``x.dim() == 2`` names no decay. The checker is
itself tested on the forks it must catch (today's and yesterday's) and on code it must leave alone.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "decaylab"
HOME = SRC / "groups.py"
WHERE = ("what decays is decided only by decaylab.groups.DecayRule (src/decaylab/groups.py): build one "
         "DecayRule and call its classify(model) / decays(model) / groups(model, λ)")

_ENUMERATE = {"parameters", "named_parameters", "modules", "named_modules", "children", "named_children"}
_SHAPE_METHODS = {"dim", "ndimension", "numel"}
_NAME_TESTS = {"endswith", "startswith", "fnmatch", "fnmatchcase", "search", "match", "fullmatch"}
_RULE_WORDS = re.compile(r"bias|norm|embed", re.IGNORECASE)
_OWNER_TYPES = re.compile(r"Norm|Embedding|NORM_TYPES|EMBEDDING_TYPES")
_DECAY = re.compile(r"decay", re.IGNORECASE)
_PRIVATE = {"classify_parameters", "_owner_rule", "_is_free_low_dim", "_model_no_weight_decay", "_NORM_CLASS_NAME"}


def _is_shape(node: ast.AST) -> bool:
    """``x.dim()``, ``x.ndimension()``, ``x.numel()``, ``x.ndim``, ``len(x.shape)``, ``len(x.size())``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SHAPE_METHODS:
        return True
    if isinstance(node, ast.Attribute) and node.attr == "ndim":
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and node.args:
        arg = node.args[0]
        return (isinstance(arg, ast.Attribute) and arg.attr == "shape") or (
            isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "size")
    return False


def _rule_word(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(_RULE_WORDS.search(node.value))


def _dotted(node: ast.AST) -> str:
    return ast.unparse(node)


class _Scope:
    """What one function (its lambdas and comprehensions included, nested defs not) does."""

    def __init__(self, name: str):
        self.name = name
        self.enumerates = self.names_decay = False
        self.tests: list[tuple[int, str]] = []       # (line, what) of shape / name / owner-type tests


def _scopes(tree: ast.Module) -> list[_Scope]:
    """One :class:`_Scope` per function (and one for the module's top level)."""
    out: list[_Scope] = []

    def visit(node: ast.AST, scope: _Scope) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = _Scope(child.name)
                out.append(inner)
                inner.names_decay = bool(_DECAY.search(child.name)) or any(
                    _DECAY.search(a.arg) for a in ast.walk(child.args) if isinstance(a, ast.arg))
                body = child.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]                                  # the docstring is prose, not code
                for stmt in body:
                    visit_node(stmt, inner)
                continue
            visit_node(child, scope)

    def visit_node(node: ast.AST, scope: _Scope) -> None:
        note(node, scope)
        visit(node, scope)

    def note(node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _ENUMERATE:
            scope.enumerates = True
        word = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                else node.arg if isinstance(node, (ast.keyword, ast.arg)) and node.arg
                else node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "")
        if _DECAY.search(word):
            scope.names_decay = True
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_shape(o) for o in operands):
                scope.tests.append((node.lineno, f"a shape test `{_dotted(node)}`"))
            elif any(_rule_word(o) for o in operands):
                scope.tests.append((node.lineno, f"a name test `{_dotted(node)}`"))
        if isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if fname in _NAME_TESTS and any(_rule_word(a) for a in node.args):
                scope.tests.append((node.lineno, f"a name test `{_dotted(node)}`"))
            if fname == "isinstance" and len(node.args) == 2 and _OWNER_TYPES.search(_dotted(node.args[1])):
                scope.tests.append((node.lineno, f"an owner-type test `{_dotted(node)}`"))

    top = _Scope("<module>")
    out.append(top)
    visit(tree, top)
    return out


def second_rules(source: str, filename: str = "<source>") -> list[str]:
    """Every place in ``source`` that decides what decays without :class:`DecayRule` (empty: none)."""
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        used = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                else node.name if isinstance(node, ast.alias) else None)
        if used in _PRIVATE:
            line = getattr(node, "lineno", None) or next(
                (n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and node in n.names), 0)
            found.append(f"{filename}:{line}: uses {used} instead of a DecayRule")
    for scope in _scopes(tree):
        if scope.enumerates and scope.names_decay:
            found += [f"{filename}:{line}: {scope.name}() tells a model's parameters apart by {what} where it "
                      "deals with weight decay" for line, what in scope.tests]
    return found


def test_no_module_outside_groups_decides_what_decays():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path != HOME:
            found += second_rules(path.read_text(), str(path.relative_to(SRC.parents[1])))
    assert not found, "a second rule of what decays:\n  " + "\n  ".join(found) + f"\n{WHERE}"


# --- the checker catches forks ------------------------------------------------------------------------------

FORKS = {
    "detect_regime before DecayRule": """
        def detect_regime(model, example, *, decay_biases=False):
            decayed = {n: p.numel() for n, p in model.named_parameters() if decay_biases or p.dim() >= 2}
            return decayed
    """,
    "equilibrium_check before DecayRule": """
        def equilibrium_check(model_factory, decay):
            model = model_factory()
            weights = [p for p in model.parameters() if p.dim() >= 2]
            others = [p for p in model.parameters() if p.dim() < 2]
            return SGD([{"params": weights}, {"params": others, "weight_decay": 0.0}], lr=0.1, weight_decay=decay)
    """,
    "ndim in a loop": """
        def split(model, wd):
            decay, rest = [], []
            for p in model.parameters():
                (rest if p.ndim < 2 else decay).append(p)
            return [{"params": decay, "weight_decay": wd}, {"params": rest}]
    """,
    "len(shape)": """
        def groups(model, lam):
            return [{"params": [p for p in model.parameters() if len(p.shape) > 1], "weight_decay": lam}]
    """,
    "by name": """
        def no_decay(model):
            return [p for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n]  # weight decay
    """,
    "by owner type": """
        def skip_decay(model):
            return [m.weight for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.Embedding))]
    """,
    "the wrapper": """
        from decaylab.groups import classify_parameters
    """,
    "the wrapper by attribute": """
        def f(model):
            return decaylab.groups.classify_parameters(model)
    """,
}


@pytest.mark.parametrize("name", FORKS)
def test_the_check_catches_a_second_rule(name):
    assert second_rules(textwrap.dedent(FORKS[name]))


def test_the_check_catches_the_forks_of_before():
    # theory.detect_regime and regimes.equilibrium_check as they were before they went through DecayRule
    old = textwrap.dedent(FORKS["detect_regime before DecayRule"]) + textwrap.dedent(
        FORKS["equilibrium_check before DecayRule"])
    assert [f.split(": ", 1)[1].split("()")[0] for f in second_rules(old)] == [
        "detect_regime", "equilibrium_check", "equilibrium_check"]


FINE = {
    "a Muon-like step: matrices apart, by its groups": """
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.ndim >= 2:
                        p.add_(orthogonalize(p.grad), alpha=-group["lr"])
                    p.mul_(1 - group["lr"] * group["weight_decay"])
    """,
    "broadcasting a per-member decay": """
        def per_member(values, param, weight_decay):
            return values.view((-1,) + (1,) * (param.dim() - 1)) * weight_decay
    """,
    "a layer's input check": """
        def forward(self, x):
            if x.dim() == 2:
                x = x.unsqueeze(0)
            return x
    """,
    "directional tensors of a monitor": """
        def bind(self, model):
            names = {id(p): n for n, p in model.named_parameters()}
            self.directional = [p.numel() > 1 for p in names]
    """,
    "the rule itself": """
        def groups(model, weight_decay, rule):
            return rule.groups(model, weight_decay)
    """,
    "a decay-free shape check elsewhere in the module": """
        def decay_of(model, rule):
            return rule.decays(model)

        def check_input(model, X):
            if X.dim() < 2:
                raise ValueError("X must be a matrix")
            return list(model.parameters())
    """,
}


@pytest.mark.parametrize("name", FINE)
def test_the_check_leaves_other_code_alone(name):
    assert second_rules(textwrap.dedent(FINE[name])) == []


def test_the_message_says_where_the_rule_lives():
    assert "decaylab.groups.DecayRule" in WHERE and "src/decaylab/groups.py" in WHERE
    assert HOME.is_file() and "class DecayRule" in HOME.read_text()
