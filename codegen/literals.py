"""Data into runner source, only ever as literals, and the check that it stayed so.

Everything a runner's source holds that came from outside the compiler (a checkpoint's config, a
store's manifest, a plan file, a device profile, a path) reaches the template through two filters:
- `python_literal`: a Python literal (None, bool, int, finite float, str, tuple of those) made by
  `repr`, never by formatting text into code;
- `docstring_text`: text for a docstring or a comment, escaped so that it cannot end either (no
  quote, backslash or line break survives unescaped).
`check_runner_source` then parses the emitted source and refuses it unless it is exactly the
expected shape: a docstring, the runtime verbatim, one `Runner` class whose attributes are literal
data (calls of the runtime's record constructors with literal arguments) and whose `schedule` calls
only the runtime's kernels, and the `__main__` guard. A runner that fails the check is a compiler
bug or an attack the validation missed; it is never written.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from functools import lru_cache

from sticc.base.errors import UserError
from sticc.base.schema import Part

# the Runner class attributes every generated runner assigns, each literal data
RUNNER_ATTRIBUTES = frozenset({
    "MODEL_NAME", "PLAN_HASH", "STORE_ID", "DEFAULT_STORE", "DATA_FILE", "SHAPE", "WORD_ROWS",
    "WORD_CHECKSUMS", "POSITION_ROWS", "POSITION_CHECKSUMS", "GLOBAL_HEADER", "LAYER_HEADERS",
    "PLANNED_SEQ_LEN", "PLANS", "IO_BANDWIDTH_CAP_BPS", "COMPUTE_THREADS", "LOADS", "PARTS",
})
# the runtime's record constructors a literal may call
RECORD_CONSTRUCTORS = frozenset({
    "EncoderShape", "DecoderShape", "RowTable", "Extent", "PoolLayout", "ChunkLoad", "Member", "blob_layout",
    "SentencePipeline", "PlanTable", "LengthRow", "ChunkCost",
})
SCHEDULE_STRINGS = frozenset(part.value for part in Part)


@dataclass(frozen=True)
class RunnerKind:
    """What a generated runner of one family kind may hold: its base class, its literal
    attributes, and what its `schedule` may name, read and call (the template's own code)."""

    base: str
    attributes: frozenset[str]
    schedule_names: frozenset[str]
    schedule_attributes: frozenset[str]
    schedule_calls: frozenset[str]
    main: str  # the `__main__` guard's function
    plan_schedules: bool = False  # one `schedule_<n>` per plan (PLANS), not one `schedule`


ENCODER_RUNNER = RunnerKind(
    base="EncoderRunner",
    attributes=RUNNER_ATTRIBUTES | {"PIPELINE"},
    schedule_names=frozenset({
        "self", "x", "mask", "call", "shape", "tokens", "acc", "key", "weights", "biases", "torch", "Call",
        "attention_chunk", "ffn_chunk",
    }),
    schedule_attributes=frozenset({
        "SHAPE", "shape", "new_zeros", "hidden", "heads_per_shard", "head_dim", "activation", "take", "release",
        "join", "Tensor", "chunks",
    }),
    schedule_calls=frozenset({
        "x.new_zeros", "self.take", "self.release", "self.join", "self.chunks", "attention_chunk", "ffn_chunk",
    }),
    main="runner_main",
    plan_schedules=True,
)
DECODER_RUNNER = RunnerKind(
    base="DecoderRunner",
    attributes=RUNNER_ATTRIBUTES | {"CONTEXT", "INDICES"},
    schedule_names=frozenset({
        "self", "x", "call", "step", "all_logits", "shape", "tokens", "h", "acc", "key", "weights", "biases",
        "logits", "torch", "Call", "Step", "bool",
    }),
    schedule_attributes=frozenset({
        "SHAPE", "shape", "new_zeros", "hidden", "take", "release", "join", "block_input", "attention", "ffn",
        "final_norm", "new_logits", "lm_head", "logits_of", "Tensor",
    }),
    schedule_calls=frozenset({
        "x.new_zeros", "self.take", "self.release", "self.join", "self.block_input", "self.attention", "self.ffn",
        "self.final_norm", "self.new_logits", "self.lm_head", "self.logits_of",
    }),
    main="decoder_main",
)


def python_literal(value: object) -> str:
    """`value` as Python source that evaluates to it: only None, bools, ints, finite floats,
    strings and tuples of those; anything else is refused (a TypeError: the compiler's bug)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if type(value) is int:
        return repr(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise TypeError(f"a runner literal must be a finite number, not {value!r}")
        return repr(value)
    if type(value) is str:
        text = repr(value)
        # prefer double quotes, as the template's own strings are
        if '"' not in value and text.startswith("'"):
            text = '"' + text[1:-1].replace("\\'", "'") + '"'
        return text
    if type(value) is tuple:
        items = [python_literal(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise TypeError(f"{type(value).__name__} {value!r} cannot be a runner literal")


def docstring_text(value: object) -> str:
    """`value` as text inside a triple-double-quoted docstring or after a `#`: every backslash,
    double quote, line break and other unprintable character escaped, so it can end neither."""
    return repr(str(value))[1:-1].replace('"', '\\"')


# ----------------------------------------------------------------------------------------------
# The check of emitted source
# ----------------------------------------------------------------------------------------------


def _refuse(node: ast.AST | None, what: str) -> UserError:
    where = f" at line {node.lineno}" if node is not None and hasattr(node, "lineno") else ""
    return UserError(f"refusing to write the runner: {what}{where} (data from an input reached the runner as code)")


def _is_literal_data(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None or type(node.value) in (bool, int, float, str)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    if isinstance(node, ast.Tuple):
        return all(_is_literal_data(item) for item in node.elts)
    if isinstance(node, ast.Call):
        return (
            isinstance(node.func, ast.Name) and node.func.id in RECORD_CONSTRUCTORS
            and all(_is_literal_data(arg) for arg in node.args)
            and all(k.arg is not None and _is_literal_data(k.value) for k in node.keywords)
        )
    return False


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


_SCHEDULE_NODES = (
    ast.FunctionDef, ast.arguments, ast.arg, ast.Name, ast.Attribute, ast.Load, ast.Store, ast.Del, ast.Assign,
    ast.Expr, ast.Call, ast.Constant, ast.For, ast.Tuple, ast.Subscript, ast.Return, ast.Delete, ast.BinOp, ast.Mult,
)


def _check_schedule(function: ast.FunctionDef, kind: RunnerKind) -> None:
    if function.decorator_list:
        raise _refuse(function, "a decorated schedule")
    for node in ast.walk(function):
        if not isinstance(node, _SCHEDULE_NODES):
            raise _refuse(node, f"a {type(node).__name__} in the schedule")
        if isinstance(node, ast.Name) and node.id not in kind.schedule_names:
            raise _refuse(node, f"the name {node.id!r} in the schedule")
        if isinstance(node, ast.Attribute) and node.attr not in kind.schedule_attributes:
            raise _refuse(node, f"the attribute {node.attr!r} in the schedule")
        if isinstance(node, ast.Call) and _dotted(node.func) not in kind.schedule_calls:
            raise _refuse(node, "a call of something other than the runtime's kernels in the schedule")
        if isinstance(node, ast.Constant) and not (
            type(node.value) is int or (type(node.value) is str and node.value in SCHEDULE_STRINGS)
        ):
            raise _refuse(node, f"the constant {node.value!r} in the schedule")


@lru_cache(maxsize=4)
def _runtime_dumps(runtime_body: str) -> tuple[str, ...]:
    return tuple(ast.dump(statement) for statement in ast.parse(runtime_body).body)


def check_runner_source(text: str, runtime_body: str, kind: RunnerKind = ENCODER_RUNNER) -> None:
    """Refuse (UserError) runner source that is not: a docstring, `runtime_body` verbatim, one
    `class Runner(<kind's base>)` of literal attributes and a schedule of kernel calls, and the
    `__main__` guard."""
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise UserError(f"refusing to write the runner: it is not Python ({error.msg} at line {error.lineno})") from None
    except (MemoryError, RecursionError):  # Python 3.11's parser on deep nesting, e.g. `x = ----...1`
        raise UserError("refusing to write the runner: it is nested too deeply to parse") from None
    body = tree.body
    runtime = _runtime_dumps(runtime_body)
    if len(body) != len(runtime) + 3:
        raise _refuse(None, f"{len(body)} top-level statements where {len(runtime) + 3} belong")
    docstring = body[0]
    if not (isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant) and type(docstring.value.value) is str):
        raise _refuse(docstring, "the first statement is not the docstring")
    for statement, expected in zip(body[1 : 1 + len(runtime)], runtime, strict=True):
        if ast.dump(statement) != expected:
            raise _refuse(statement, "the inlined runtime differs from sticc's")
    runner, guard = body[-2], body[-1]
    if not (
        isinstance(runner, ast.ClassDef) and runner.name == "Runner" and not runner.decorator_list
        and not runner.keywords and [_dotted(b) for b in runner.bases] == [kind.base]
    ):
        raise _refuse(runner, f"the generated class is not `class Runner({kind.base})`")
    assigned: set[str] = set()
    schedules: list[str] = []
    for statement in runner.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            if name not in kind.attributes or name in assigned:
                raise _refuse(statement, f"an unexpected class attribute {name!r}")
            if not _is_literal_data(statement.value):
                raise _refuse(statement, f"{name} is not literal data")
            assigned.add(name)
        elif isinstance(statement, ast.FunctionDef) and statement.name.startswith("schedule"):
            _check_schedule(statement, kind)
            schedules.append(statement.name)
        else:
            raise _refuse(statement, f"an unexpected {type(statement).__name__} in the Runner class")
    expected = [f"schedule_{n}" for n in range(len(schedules))] if kind.plan_schedules else ["schedule"]
    if assigned != kind.attributes or schedules != expected or not schedules:
        raise _refuse(runner, f"the Runner class lacks {sorted(kind.attributes - assigned) or expected[:1]} or has other schedules")
    main_guard = f'if __name__ == "__main__":\n    raise SystemExit({kind.main}(Runner))\n'
    if ast.dump(guard) != ast.dump(ast.parse(main_guard).body[0]):
        raise _refuse(guard, "the last statement is not the `__main__` guard")


def runner_literal(path, name: str, kind: type):
    """The literal class attribute `name` of the generated runner at `path`, read without running
    it (a runner is code; reading its facts must not execute it). A `UserError` where the file is
    not a runner or the attribute is not a literal of `kind`."""
    try:
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path} is not a runner sticc wrote: {error}") from None
    except (MemoryError, RecursionError):  # the parser on deep nesting
        raise UserError(f"{path} is not a runner sticc wrote: it is nested too deeply to parse") from None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Runner":
            for statement in node.body:
                if (
                    isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == name
                ):
                    try:
                        value = ast.literal_eval(statement.value)
                    except ValueError:
                        break
                    if type(value) is kind:
                        return value
                    break
    raise UserError(f"{path} is not a runner sticc wrote (no literal {name})")
