"""Label and field selectors as the API server parses them (k8s.io/apimachinery/pkg/labels, fields).

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>N`, `k<N`, joined by
commas. Field selectors: `f=v`, `f==v`, `f!=v` joined by commas, on the fields a kind declares.
SelectorError carries the message of the API's 400 BadRequest.
"""

import re


class SelectorError(Exception):
    pass


_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|>|<|[^\s(),!=<>]+)")


def _tokens(text):
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SelectorError("unable to parse requirement: %s" % text)
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_labels(text):
    """A list of (key, op, values) requirements; an empty selector matches everything."""
    if not text or not text.strip():
        return []
    toks, i, reqs = _tokens(text), 0, []

    def need(cond, what):
        if not cond:
            raise SelectorError("unable to parse requirement: found '%s', expected: %s"
                                % (toks[i] if i < len(toks) else "", what))

    while i < len(toks):
        if toks[i] == "!":
            i += 1
            need(i < len(toks) and _is_word(toks[i]), "identifier after '!'")
            reqs.append((toks[i], "!", ()))
            i += 1
        else:
            need(_is_word(toks[i]), "identifier")
            key = toks[i]
            i += 1
            if i == len(toks) or toks[i] == ",":
                reqs.append((key, "exists", ()))
            elif toks[i] in ("=", "==", "!="):
                op = "!=" if toks[i] == "!=" else "="
                i += 1
                if i < len(toks) and _is_word(toks[i]):
                    reqs.append((key, op, (toks[i],)))
                    i += 1
                else:
                    reqs.append((key, op, ("",)))
            elif toks[i] in ("in", "notin"):
                op = toks[i]
                i += 1
                need(i < len(toks) and toks[i] == "(", "'('")
                i += 1
                vals = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        need(_is_word(toks[i]), "value")
                        vals.append(toks[i])
                    i += 1
                need(i < len(toks), "')'")
                i += 1
                reqs.append((key, op, tuple(vals)))
            elif toks[i] in (">", "<"):
                op = toks[i]
                i += 1
                need(i < len(toks) and toks[i].lstrip("-").isdigit(), "integer")
                reqs.append((key, op, (int(toks[i]),)))
                i += 1
            else:
                need(False, "'=', '!=', 'in', 'notin' or ','")
        if i < len(toks):
            need(toks[i] == ",", "','")
            i += 1
    for key, _, _ in reqs:
        _check_key(key)
    return reqs


def _is_word(t):
    return t not in ("(", ")", ",", "=", "==", "!=", "!", ">", "<")


_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _check_key(key):
    if not _KEY.match(key):
        raise SelectorError('invalid label key "%s": name part must consist of alphanumeric characters, \'-\', '
                            '\'_\' or \'.\', and must start and end with an alphanumeric character' % key)


def labels_match(reqs, labels):
    for key, op, vals in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "=":
            if not have or v != vals[0]:
                return False
        elif op == "!=":
            if have and v == vals[0]:
                return False
        elif op == "in":
            if not have or v not in vals:
                return False
        elif op == "notin":
            if have and v in vals:
                return False
        elif op == "exists":
            if not have:
                return False
        elif op == "!":
            if have:
                return False
        elif op in (">", "<"):
            try:
                n = int(v)
            except (TypeError, ValueError):
                return False
            if (op == ">" and not n > vals[0]) or (op == "<" and not n < vals[0]):
                return False
    return True


def parse_fields(text, known):
    """A list of (field, op, value); op is "=" or "!="."""
    if not text or not text.strip():
        return []
    reqs = []
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            at = _find_unescaped(part, op)
            if at >= 0:
                field, value = part[:at].strip(), _unescape(part[at + len(op):].strip())
                break
        else:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, part))
        if field not in known:
            raise SelectorError("field label not supported: %s" % field)
        reqs.append((field, "!=" if op == "!=" else "=", value))
    return reqs


def fields_match(reqs, values):
    for field, op, value in reqs:
        if (values.get(field, "") == value) != (op == "="):
            return False
    return True


def _split_unescaped(text, sep):
    out, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _find_unescaped(text, needle):
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(needle, i):
            return i
        i += 1
    return -1


def _unescape(v):
    return re.sub(r"\\(.)", r"\1", v)
