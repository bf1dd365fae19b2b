"""The three PATCH bodies the Kubernetes API takes, on plain JSON values (dict, list, str, ...).

- merge_patch: RFC 7386 JSON merge patch (application/merge-patch+json), what kubectl apply sends
  for custom resources and `kubectl patch --type merge` sends for anything.
- json_patch: RFC 6902 JSON patch (application/json-patch+json): add, remove, replace, move, copy,
  test, with RFC 6901 pointers (~0, ~1, "-" to append).
- strategic_merge_patch: Kubernetes' strategic merge patch (application/strategic-merge-patch+json)
  for built-in kinds: maps merge, null deletes, and lists merge by the patch merge key their Go type
  declares (containers by name, ports by port or containerPort, conditions by type, ...) when the
  caller's `meta` says so, else are replaced. The directives kubectl's apply emits are honoured:
  `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/FIELD`,
  `$deleteFromPrimitiveList/FIELD`. Simplified: `$setElementOrder` puts the listed items first, in
  its order, then the items the patch did not name in their old order (apimachinery interleaves
  those by their old position); a merge-key list item without its key is an error.

PatchError is raised with the message the API server would put in its 422/400 Status.
"""

import copy


class PatchError(Exception):
    pass


# ---- RFC 7386 ----

def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# ---- RFC 6902 ----

def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError('invalid JSON pointer "%s": it must start with "/"' % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, parts, path):
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError('doc is missing path: "%s"' % path)
            cur = cur[p]
        elif isinstance(cur, list):
            i = _index(p, len(cur), path)
            cur = cur[i]
        else:
            raise PatchError('doc is missing path: "%s"' % path)
    return cur


def _index(p, n, path, allow_end=False):
    if allow_end and p == "-":
        return n
    if not p.isdigit() or (len(p) > 1 and p[0] == "0"):
        raise PatchError('invalid array index "%s" in path "%s"' % (p, path))
    i = int(p)
    if i > n or (i == n and not allow_end):
        raise PatchError('array index out of bounds: %d, path "%s"' % (i, path))
    return i


def _get(doc, path):
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError('doc is missing path: "%s"' % path)
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), path)]
    raise PatchError('doc is missing path: "%s"' % path)


def _add(doc, path, value):
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), path, allow_end=True), value)
    else:
        raise PatchError('doc is missing path: "%s"' % path)
    return doc


def _remove(doc, path):
    parts = _pointer(path)
    if not parts:
        raise PatchError("unable to remove the whole document")
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError('unable to remove nonexistent key: %s: missing value' % last)
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), path))
    raise PatchError('doc is missing path: "%s"' % path)


def json_patch(target, ops):
    if not isinstance(ops, list):
        raise PatchError("json patch must be an array of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError("json patch operation without \"op\"")
        kind, path = op["op"], op.get("path")
        if path is None:
            raise PatchError('json patch operation "%s" without "path"' % kind)
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            parts = _pointer(path)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent = _parent(doc, parts, path)
                if isinstance(parent, list):
                    parent[_index(parts[-1], len(parent), path)] = copy.deepcopy(op.get("value"))
                else:
                    parent[parts[-1]] = copy.deepcopy(op.get("value"))
        elif kind in ("move", "copy"):
            frm = op.get("from")
            if frm is None:
                raise PatchError('json patch operation "%s" without "from"' % kind)
            value = _remove(doc, frm) if kind == "move" else copy.deepcopy(_get(doc, frm))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError("testing value %s failed" % path)
        else:
            raise PatchError('Unexpected kind: %s' % kind)
    return doc


# ---- strategic merge patch ----

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder/"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(original, patch, meta):
    """meta(path) -> (strategies, merge_key) for the list or map at path, a tuple of field names
    with "[]" for a list item, e.g. ("spec", "containers", "[]", "ports"); strategies is a set of
    "merge", "retainKeys" (empty: replace)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    result = _smp_map(original if isinstance(original, dict) else {}, patch, (), meta)
    return {} if result is _DELETED else result


_DELETED = object()


def _smp_map(original, patch, path, meta):
    directive = patch.get(DIRECTIVE)
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return _DELETED
    if directive not in (None, "merge"):
        raise PatchError('Unable to find directive "%s"' % directive)
    result = dict(original)
    orders = {}
    for k, v in patch.items():
        if k == DIRECTIVE or k == RETAIN_KEYS:
            continue
        if k.startswith(SET_ORDER):
            orders[k[len(SET_ORDER):]] = v
            continue
        if k.startswith(DELETE_PRIMITIVE):
            field = k[len(DELETE_PRIMITIVE):]
            if isinstance(result.get(field), list) and isinstance(v, list):
                result[field] = [x for x in result[field] if x not in v]
            continue
        if v is None:
            result.pop(k, None)
            continue
        sub = path + (k,)
        old = result.get(k)
        if isinstance(v, dict):
            merged = _smp_map(old if isinstance(old, dict) else {}, v, sub, meta)
            if merged is _DELETED:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _smp_list(old if isinstance(old, list) else [], v, sub, meta)
        else:
            result[k] = v
    for field, order in orders.items():
        if isinstance(result.get(field), list) and isinstance(order, list):
            strategies, key = meta(path + (field,))
            result[field] = _reorder(result[field], order, key)
    retain = patch.get(RETAIN_KEYS)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(original, patch, path, meta):
    strategies, key = meta(path)
    if "merge" not in strategies:
        return [_strip(x) if isinstance(x, dict) else x for x in patch]
    if any(isinstance(x, dict) and x.get(DIRECTIVE) == "replace" and len(x) == 1 for x in patch):
        return [_strip(x) if isinstance(x, dict) else x
                for x in patch if not (isinstance(x, dict) and x.get(DIRECTIVE) == "replace")]
    if key is None:                       # a list of primitives merged as a set
        result = list(original)
        for x in patch:
            if x not in result:
                result.append(x)
        return result
    result = [copy.deepcopy(x) for x in original]
    item_path = path + ("[]",)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError("%s: a list with merge key %s holds a non-object" % (".".join(path), key))
        if key not in item:
            raise PatchError("map: %s does not contain declared merge key: %s" % (item, key))
        at = next((i for i, x in enumerate(result) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get(DIRECTIVE) == "delete":
            if at is not None:
                result.pop(at)
            continue
        if at is None:
            result.append(_smp_map({}, item, item_path, meta))
        else:
            merged = _smp_map(result[at], item, item_path, meta)
            if merged is _DELETED:
                result.pop(at)
            else:
                result[at] = merged
    return result


def _reorder(items, order, key):
    def ident(x):
        return x.get(key) if (key is not None and isinstance(x, dict)) else x
    wanted = [ident(o) for o in order]
    first = []
    for w in wanted:
        for x in items:
            if ident(x) == w and not any(x is y for y in first):
                first.append(x)
                break
    return first + [x for x in items if not any(x is y for y in first)]


def _strip(value):
    """The patch value without directives, as it is stored."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if k not in (DIRECTIVE, RETAIN_KEYS) and not k.startswith(SET_ORDER)
                and not k.startswith(DELETE_PRIMITIVE) and v is not None}
    if isinstance(value, list):
        return [_strip(x) for x in value]
    return value
