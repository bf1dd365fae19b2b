"""The one protobuf body kubectl sends this double: `kubectl create namespace` posts a v1 Namespace as
application/vnd.kubernetes.protobuf (client-go's typed clients prefer it for built-in kinds; apply,
patch, delete and everything on custom resources send JSON). Decoded here: the "k8s\\0" envelope
(runtime.Unknown), TypeMeta, and of the Namespace its ObjectMeta's name, generateName, namespace,
labels, annotations and finalizers, and spec.finalizers. Anything else is refused with the 415 the
API server gives for a format it does not read.
"""


class Unsupported(Exception):
    pass


def _varint(buf, i):
    shift = n = 0
    while True:
        if i >= len(buf):
            raise Unsupported("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def fields(buf):
    """(field number, wire type, value) triples; value is int or bytes."""
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise Unsupported("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def _map_entry(buf):
    k = v = ""
    for num, _, val in fields(buf):
        if num == 1:
            k = val.decode()
        elif num == 2:
            v = val.decode()
    return k, v


def _object_meta(buf):
    meta = {}
    for num, _, v in fields(buf):
        if num in (1, 2, 3):
            meta[("name", "generateName", "namespace")[num - 1]] = v.decode()
        elif num in (11, 12):
            k, val = _map_entry(v)
            meta.setdefault("labels" if num == 11 else "annotations", {})[k] = val
        elif num == 14:
            meta.setdefault("finalizers", []).append(v.decode())
    return meta


def decode(body):
    """The JSON-shaped object of a protobuf-encoded Namespace, or Unsupported."""
    if not body.startswith(b"k8s\x00"):
        raise Unsupported("no k8s protobuf envelope")
    api_version = kind = ""
    raw = b""
    for num, _, v in fields(body[4:]):
        if num == 1:
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    api_version = v2.decode()
                elif n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = v
    if (api_version, kind) != ("v1", "Namespace"):
        raise Unsupported("%s %s" % (api_version, kind))
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {}}
    for num, _, v in fields(raw):
        if num == 1:
            obj["metadata"] = _object_meta(v)
        elif num == 2:
            fin = [v2.decode() for n2, _, v2 in fields(v) if n2 == 1]
            if fin:
                obj["spec"] = {"finalizers": fin}
    return obj
