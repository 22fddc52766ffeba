"""Check LightGBM model text before LightGBM's C++ parser sees it (``check_model_text``).

Whoever sends a model folder writes both model.txt and the sha256 in model.json, so the hash
only catches accidents. LightGBM trusts the text: a child index that points back to the root
makes prediction loop forever, a ``split_feature`` or leaf index out of range reads outside its
arrays (a crash, or garbage probabilities), ``tree_sizes`` that do not match the trees send the
parser into the middle of a tree (an abort). So the text is parsed here, in Python, against
the grammar LightGBM 3/4 writes (``Booster.model_to_string``), and refused with one line naming
the first defect (tree, field) unless:

* the header names the model card's features (``max_feature_idx``, ``feature_names``,
  ``feature_infos``), ``num_class`` = ``num_tree_per_iteration`` = the outputs the card's
  fitted classes need, and a classifier objective (``binary sigmoid:s``,
  ``multiclass num_class:k``, ``multiclassova num_class:k sigmoid:s``) of that many classes;
* ``tree_sizes`` (bytes from each ``Tree=i`` line to the next, as LightGBM seeks with them)
  gives exactly the offsets of the ``Tree=0..n-1`` blocks and of ``end of trees``; the tree
  count is a multiple of the trees per iteration;
* each tree: ``key=value`` lines of known keys, ``num_leaves`` >= 1, every array of its exact
  length, numbers that parse (finite where prediction uses them: leaf values, linear
  coefficients, shrinkage; thresholds finite or +-inf, as LightGBM writes them),
  ``split_feature`` < the number of features, ``decision_type`` a valid code, children in
  range (internal nodes 1..num_leaves-2, leaves ~0..~(num_leaves-1)) with every node reached
  exactly once from the root (so no cycle), the categorical fields (``num_cat``,
  ``cat_boundaries``, ``cat_threshold``, category indices of categorical nodes) consistent,
  and the linear-tree fields (``is_linear``: ``leaf_const``, ``num_features``,
  ``leaf_features`` < the number of features, ``leaf_coeff``) consistent;
* the ``parameters:`` lines are ``[key: value]`` (LightGBM parses them natively) and the
  ``pandas_categorical:`` line, which lightgbm's Python reads with ``json.loads``, is shallow
  JSON.
"""

from __future__ import annotations

import math
import re

import numpy as np

MAX_LEAVES = 131072  # LightGBM's own bound on num_leaves
MAX_TREES = 200_000
MAX_CLASSES = 1000
# Keys LightGBM writes for a tree (src/io/tree.cpp, Tree::ToString), in any order.
TREE_KEYS = frozenset({
    "num_leaves", "num_cat", "split_feature", "split_gain", "threshold", "decision_type", "left_child",
    "right_child", "leaf_value", "leaf_weight", "leaf_count", "internal_value", "internal_weight",
    "internal_count", "cat_boundaries", "cat_threshold", "is_linear", "leaf_const", "num_features",
    "leaf_features", "leaf_coeff", "shrinkage",
})  # fmt: skip
HEADER_KEYS = frozenset({
    "version", "num_class", "num_tree_per_iteration", "label_index", "max_feature_idx", "objective",
    "average_output", "feature_names", "feature_infos", "monotone_constraints", "tree_sizes",
})  # fmt: skip
VERSIONS = ("v2", "v3", "v4")
_INT = r"-?\d{1,10}"
_FLOAT = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAT = rf"(?:{_FLOAT}|-?nan|-?inf)"  # statistics prediction never uses (gains, weights, counts)
_INTS = re.compile(rf"(?:{_INT}(?: {_INT})*)?")
_FLOATS = re.compile(rf"(?:{_FLOAT}(?: {_FLOAT})*)?")
_STATS = re.compile(rf"(?:{_STAT}(?: {_STAT})*)?", re.IGNORECASE)
_BOUND = rf"(?:{_FLOAT}|-?inf)"  # a numerical split may be at +-inf (LightGBM writes it for linear trees)
_BOUNDS = re.compile(rf"(?:{_BOUND}(?: {_BOUND})*)?")
_PARAM = re.compile(r"\[[A-Za-z0-9_]+: [ -~]*\]")
_OBJECTIVE = re.compile(
    r"(binary) sigmoid:(\S+)|(multiclass) num_class:(\d+)|(multiclassova) num_class:(\d+) sigmoid:(\S+)"
)
# decision_type: bit 0 categorical, bit 1 default left, bits 2-3 missing type 0 (none), 1 (zero), 2 (NaN)
VALID_DECISION_TYPES = frozenset(
    cat | left << 1 | missing << 2 for cat in (0, 1) for left in (0, 1) for missing in (0, 1, 2)
)


class ModelTextError(ValueError):
    """LightGBM model text that LightGBM itself must not be given."""


def _ints(value: str, where: str, n: int | None = None) -> np.ndarray:
    if not _INTS.fullmatch(value):
        raise ModelTextError(f"{where}: not a list of integers")
    out = np.array(value.split(), dtype=np.int64)
    if n is not None and len(out) != n:
        raise ModelTextError(f"{where}: {len(out)} values, expected {n}")
    return out


def _floats(value: str, where: str, n: int | None = None, finite: bool = True) -> np.ndarray:
    if not (_FLOATS if finite else _STATS).fullmatch(value):
        raise ModelTextError(f"{where}: not a list of {'finite ' if finite else ''}numbers")
    return _array(value, where, n, finite)


def _thresholds(value: str, where: str, n: int) -> np.ndarray:
    if not _BOUNDS.fullmatch(value):
        raise ModelTextError(f"{where}: not a list of numbers (finite or +-inf)")
    out = _array(value, where, n, finite=False)
    if np.isnan(out).any():  # 1e999 and the like read as inf: fine; nan is not a threshold
        raise ModelTextError(f"{where}: NaN thresholds")
    return out


def _array(value: str, where: str, n: int | None, finite: bool) -> np.ndarray:
    out = np.array(value.split(), dtype=np.float64)
    if finite and not np.isfinite(out).all():  # e.g. 1e999
        raise ModelTextError(f"{where}: non-finite values")
    if n is not None and len(out) != n:
        raise ModelTextError(f"{where}: {len(out)} values, expected {n}")
    return out


def _int(value: str, where: str, low: int, high: int) -> int:
    if not re.fullmatch(_INT, value):
        raise ModelTextError(f"{where}: {value[:40]!r} is not an integer")
    v = int(value)
    if not low <= v <= high:
        raise ModelTextError(f"{where}: {v} outside {low}..{high}")
    return v


def _per_leaf_lists(value: str, counts: np.ndarray, where: str, token: str) -> list[str]:
    """Tokens of a linear tree's ``leaf_features``/``leaf_coeff``: per leaf, each value followed by a
    space, then one more space (how LightGBM writes them); exactly ``counts[i]`` values for leaf i."""
    tokens, pos = [], 0
    pattern = re.compile(token + " ")
    for i, k in enumerate(counts):
        for _ in range(int(k)):
            m = pattern.match(value, pos)
            if not m:
                raise ModelTextError(f"{where}: leaf {i} does not list its {k} values")
            tokens.append(m.group()[:-1])
            pos = m.end()
        if value[pos : pos + 1] != " ":
            raise ModelTextError(f"{where}: leaf {i} lists more values than num_features says")
        pos += 1
    if pos != len(value):
        raise ModelTextError(f"{where}: more values than num_features lists")
    return tokens


def check_tree(fields: dict[str, str], where: str, n_features: int) -> None:
    """One tree's ``key=value`` fields; raises ModelTextError naming the first defect."""
    for key in ("num_leaves", "num_cat", "leaf_value"):
        if key not in fields:
            raise ModelTextError(f"{where}: no {key}")
    leaves = _int(fields["num_leaves"], f"{where} num_leaves", 1, MAX_LEAVES)
    n = leaves - 1  # internal nodes
    num_cat = _int(fields["num_cat"], f"{where} num_cat", 0, n)
    _floats(fields["leaf_value"], f"{where} leaf_value", leaves)
    linear = _int(fields.get("is_linear", "0"), f"{where} is_linear", 0, 1)
    if "shrinkage" in fields:
        _floats(fields["shrinkage"], f"{where} shrinkage", 1)
    for key, length in (("leaf_weight", leaves), ("leaf_count", leaves), ("split_gain", n), ("internal_value", n),
                        ("internal_weight", n), ("internal_count", n)):  # fmt: skip
        # Statistics prediction never reads: the right length is enough (a single leaf may leave
        # leaf_weight empty, as LightGBM 4 does).
        value = fields.get(key)
        if value and not (leaves == 1 and not value) and value.count(" ") + 1 != length:
            raise ModelTextError(f"{where} {key}: {value.count(' ') + 1} values, expected {length}")
        if value and not _STATS.fullmatch(value):
            raise ModelTextError(f"{where} {key}: not a list of numbers")
    for key in ("split_feature", "threshold", "decision_type", "left_child", "right_child"):
        if key not in fields and n > 0:
            raise ModelTextError(f"{where}: no {key}")
    split_feature = _ints(fields.get("split_feature", ""), f"{where} split_feature", n)
    threshold = _thresholds(fields.get("threshold", ""), f"{where} threshold", n)
    decision = _ints(fields.get("decision_type", ""), f"{where} decision_type", n)
    children = [_ints(fields.get(k, ""), f"{where} {k}", n) for k in ("left_child", "right_child")]
    bad = np.flatnonzero((split_feature < 0) | (split_feature >= n_features))
    if len(bad):
        raise ModelTextError(f"{where} split_feature: node {bad[0]} splits on feature {split_feature[bad[0]]}, "
                             f"the model has {n_features} features")  # fmt: skip
    bad = [i for i, d in enumerate(decision) if int(d) not in VALID_DECISION_TYPES]
    if bad:
        raise ModelTextError(f"{where} decision_type: node {bad[0]} has code {decision[bad[0]]}")
    for name, child in zip(("left_child", "right_child"), children):
        root = np.flatnonzero(child == 0)
        if len(root):  # LightGBM would loop forever
            raise ModelTextError(f"{where} {name}: node {root[0]} points back to the root (a cycle)")
        bad = np.flatnonzero((child >= n) | (child < -leaves))
        if len(bad):
            raise ModelTextError(f"{where} {name}: node {bad[0]} points to {child[bad[0]]}, outside internal nodes "
                                 f"1..{n - 1} and leaves -1..-{leaves}")  # fmt: skip
    # Every node once from the root: a tree, no cycle (a child pointing back loops LightGBM forever).
    left, right = children[0].tolist(), children[1].tolist()
    seen_nodes, seen_leaves = [False] * max(n, 1), [False] * leaves
    stack = [0] if n > 0 else []
    while stack:
        node = stack.pop()
        if seen_nodes[node]:
            raise ModelTextError(f"{where}: node {node} is reached twice (a cycle or a shared subtree)")
        seen_nodes[node] = True
        for child in (left[node], right[node]):
            if child >= 0:
                stack.append(child)
            elif seen_leaves[~child]:
                raise ModelTextError(f"{where}: leaf {~child} is reached twice")
            else:
                seen_leaves[~child] = True
    if n > 0 and not (all(seen_nodes) and all(seen_leaves)):
        what = f"node {seen_nodes.index(False)}" if not all(seen_nodes) else f"leaf {seen_leaves.index(False)}"
        raise ModelTextError(f"{where}: {what} is not reached from the root")
    categorical = (decision & 1).astype(bool)
    if num_cat == 0:
        if categorical.any() or "cat_boundaries" in fields or "cat_threshold" in fields:
            raise ModelTextError(f"{where}: categorical splits or fields with num_cat=0")
    else:
        for key in ("cat_boundaries", "cat_threshold"):
            if key not in fields:
                raise ModelTextError(f"{where}: num_cat={num_cat} without {key}")
        bounds = _ints(fields["cat_boundaries"], f"{where} cat_boundaries", num_cat + 1)
        bitsets = _ints(fields["cat_threshold"], f"{where} cat_threshold")
        if bounds[0] != 0 or (np.diff(bounds) < 0).any() or bounds[-1] != len(bitsets):
            raise ModelTextError(f"{where} cat_boundaries: must rise from 0 to the {len(bitsets)} cat_threshold words")
        if ((bitsets < 0) | (bitsets >= 2**32)).any():
            raise ModelTextError(f"{where} cat_threshold: words outside 0..2^32-1")
        index = threshold[categorical]
        if ((index != np.round(index)) | (index < 0) | (index >= num_cat)).any():
            raise ModelTextError(f"{where} threshold: a categorical node's category set is not one of 0..{num_cat - 1}")
    linear_keys = {"leaf_const", "num_features", "leaf_features", "leaf_coeff"} & set(fields)
    if not linear:
        if linear_keys:
            raise ModelTextError(f"{where}: linear-tree fields {sorted(linear_keys)} with is_linear=0")
        return
    for key in ("leaf_const", "num_features", "leaf_features", "leaf_coeff"):
        if key not in fields:
            raise ModelTextError(f"{where}: is_linear=1 without {key}")
    _floats(fields["leaf_const"], f"{where} leaf_const", leaves)
    counts = _ints(fields["num_features"], f"{where} num_features", leaves)
    if ((counts < 0) | (counts > n_features)).any():
        raise ModelTextError(f"{where} num_features: outside 0..{n_features}")
    feats = _per_leaf_lists(fields["leaf_features"], counts, f"{where} leaf_features", r"\d{1,10}")
    if any(int(f) >= n_features for f in feats):
        raise ModelTextError(f"{where} leaf_features: a feature index outside 0..{n_features - 1}")
    coeffs = _per_leaf_lists(fields["leaf_coeff"], counts, f"{where} leaf_coeff", _FLOAT)
    if not all(math.isfinite(float(c)) for c in coeffs):
        raise ModelTextError(f"{where} leaf_coeff: non-finite values")


def _header(lines: list[str]) -> dict[str, str]:
    if not lines or lines[0] != "tree":
        raise ModelTextError("not LightGBM model text (no 'tree' first line)")
    header = {}
    for line in lines[1:]:
        if not line:
            continue
        key, eq, value = line.partition("=")
        if key not in HEADER_KEYS or (not eq and key != "average_output"):
            raise ModelTextError(f"header: unexpected line {line[:60]!r}")
        if key in header:
            raise ModelTextError(f"header: {key} given twice")
        header[key] = value
    return header


def check_model_text(text: str, features: list[str], n_outputs: int) -> None:
    """Raise ModelTextError naming the first defect of LightGBM model ``text`` for a model of
    ``features`` (the booster's columns, in order) and ``n_outputs`` trees per iteration (1 for
    two classes, else the number of classes); return None for text LightGBM may be given."""
    if "\0" in text or "\r" in text:
        raise ModelTextError("NUL or carriage-return characters (LightGBM writes neither)")
    data = text.encode("utf-8")
    start = data.find(b"\nTree=")
    if start < 0:
        raise ModelTextError("no trees")
    start += 1
    header = _header(data[:start].decode("utf-8").split("\n"))
    for key in ("version", "num_class", "num_tree_per_iteration", "max_feature_idx", "objective", "feature_names",
                "feature_infos", "tree_sizes", "label_index"):  # fmt: skip
        if key not in header:
            raise ModelTextError(f"header: no {key}")
    if header["version"] not in VERSIONS:
        raise ModelTextError(f"header: version {header['version'][:20]!r}, expected one of {VERSIONS}")
    num_class = _int(header["num_class"], "header num_class", 1, MAX_CLASSES)
    per_iteration = _int(header["num_tree_per_iteration"], "header num_tree_per_iteration", 1, MAX_CLASSES)
    if not num_class == per_iteration == n_outputs:
        raise ModelTextError(f"header: num_class {num_class} and num_tree_per_iteration {per_iteration} must both "
                             f"be {n_outputs}, the outputs of the model card's fitted classes")  # fmt: skip
    _int(header["label_index"], "header label_index", 0, 0)
    n_features = len(features)
    _int(header["max_feature_idx"], "header max_feature_idx", n_features - 1, n_features - 1)
    if len(header["feature_names"].split(" ")) != n_features:  # the names themselves: checked once loaded
        raise ModelTextError(f"header: feature_names does not list {n_features} features")
    if len(header["feature_infos"].split(" ")) != n_features:
        raise ModelTextError(f"header: feature_infos does not list {n_features} features")
    if "monotone_constraints" in header:
        mono = _ints(header["monotone_constraints"], "header monotone_constraints", n_features)
        if ((mono < -1) | (mono > 1)).any():
            raise ModelTextError("header monotone_constraints: values outside -1..1")
    _check_objective(header["objective"], num_class)

    end = data.find(b"\nend of trees\n", start - 1)
    if end < 0:
        raise ModelTextError("no 'end of trees' line (truncated?)")
    end += 1
    sizes = _ints(header["tree_sizes"], "header tree_sizes")
    if not 1 <= len(sizes) <= MAX_TREES or (sizes <= 0).any():
        raise ModelTextError(f"header tree_sizes: {len(sizes)} trees, expected 1..{MAX_TREES} positive sizes")
    if len(sizes) % per_iteration:
        raise ModelTextError(f"header: {len(sizes)} trees are not whole iterations of {per_iteration}")
    offsets = np.concatenate([[0], np.cumsum(sizes)]) + start
    if offsets[-1] != end:
        raise ModelTextError(f"header tree_sizes: they add up to {offsets[-1] - start} bytes, the trees take "
                             f"{end - start}")  # fmt: skip
    for i in range(len(sizes)):
        block = data[offsets[i] : offsets[i + 1]].decode("utf-8")
        _check_block(block, i, n_features)
    _check_trailer(data[end:].decode("utf-8"))
    _check_pandas_categorical(text)


def _check_objective(objective: str, num_class: int) -> None:
    m = _OBJECTIVE.fullmatch(objective)
    if not m:
        raise ModelTextError(f"header: objective {objective[:60]!r} is not a classifier's (binary, multiclass, "
                             "multiclassova)")  # fmt: skip
    kind = m.group(1) or m.group(3) or m.group(5)
    k = 1 if kind == "binary" else int(m.group(4) or m.group(6))
    sigmoid = m.group(2) or m.group(7)
    if k != num_class or (kind != "binary" and k < 3):
        raise ModelTextError(f"header: objective {objective!r} does not fit num_class {num_class}")
    if sigmoid is not None:
        try:
            s = float(sigmoid)
        except ValueError:
            s = math.nan
        if not (math.isfinite(s) and s > 0):
            raise ModelTextError(f"header: objective {objective!r}: sigmoid must be a positive number")


def _check_block(block: str, i: int, n_features: int) -> None:
    where = f"tree {i}"
    lines = block.split("\n")
    if lines[0] != f"Tree={i}":
        raise ModelTextError(f"{where}: tree_sizes do not lead to its 'Tree={i}' line")
    try:
        blank = lines.index("", 1)
    except ValueError:
        raise ModelTextError(f"{where}: no blank line after its fields") from None
    if any(lines[blank:]):
        raise ModelTextError(f"{where}: tree_sizes do not end at the next tree")
    fields = {}
    for line in lines[1:blank]:
        key, eq, value = line.partition("=")
        if not eq or key not in TREE_KEYS:
            raise ModelTextError(f"{where}: unexpected line {line[:60]!r}")
        if key in fields:
            raise ModelTextError(f"{where}: {key} given twice")
        fields[key] = value
    check_tree(fields, where, n_features)


def _check_trailer(trailer: str) -> None:
    """After the trees: the parameters, which LightGBM parses natively (``[key: value]`` lines)."""
    lines = trailer.split("\n")
    if "parameters:" in lines:
        first = lines.index("parameters:") + 1
        try:
            last = lines.index("end of parameters", first)
        except ValueError:
            raise ModelTextError("parameters: no 'end of parameters' line (truncated?)") from None
        for line in lines[first:last]:
            if line and not _PARAM.fullmatch(line):
                raise ModelTextError(f"parameters: unexpected line {line[:60]!r}")
    elif "end of parameters" in lines:
        raise ModelTextError("'end of parameters' without 'parameters:'")


def _check_pandas_categorical(text: str) -> None:
    """The line lightgbm's Python (``_load_pandas_categorical``) finds exactly as it finds it, and
    gives to ``json.loads``: null or a shallow list of category lists."""
    from sts.io.untrusted import UntrustedFileError, parse_json

    key = "pandas_categorical:"
    idx = text.rfind("\n", 0, len(text) - len(key))
    last_line = text[idx:].strip()
    if not last_line.startswith(key):
        return
    try:
        value = parse_json(last_line[len(key) :], "pandas_categorical", "JSON line", max_depth=2)
    except UntrustedFileError as err:
        raise ModelTextError(str(err)) from None
    if value is not None and not (isinstance(value, list) and all(isinstance(v, list) for v in value)):
        raise ModelTextError("pandas_categorical: expected null or a list of category lists")
