package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// method returns the bound Python method name of obj, for the methods that
// transformers' immutable sandbox lets templates call (nothing that
// changes a value).
func method(obj Value, name string) (Value, bool) {
	switch o := obj.(type) {
	case string:
		fn, ok := strMethods[name]
		if !ok {
			return nil, false
		}
		return builtin(func(ev *evaluator, args []Value, kw *Dict, line int) (Value, error) {
			return fn(ev, o, callArgs{args, kw, "str." + name, line})
		}), true
	case *Dict:
		switch name {
		case "items":
			return builtin(func(*evaluator, []Value, *Dict, int) (Value, error) { return dictItems(o), nil }), true
		case "keys":
			return builtin(func(*evaluator, []Value, *Dict, int) (Value, error) {
				return &List{Items: append([]Value(nil), o.keys...)}, nil
			}), true
		case "values":
			return builtin(func(*evaluator, []Value, *Dict, int) (Value, error) {
				return &List{Items: append([]Value(nil), o.vals...)}, nil
			}), true
		case "get":
			return builtin(func(ev *evaluator, args []Value, kw *Dict, line int) (Value, error) {
				if len(args) < 1 || len(args) > 2 {
					return nil, &RuntimeError{line, "dict.get takes a key and an optional default"}
				}
				if v, ok := o.Get(args[0]); ok {
					return v, nil
				}
				if len(args) == 2 {
					return args[1], nil
				}
				return nil, nil
			}), true
		case "copy":
			return builtin(func(*evaluator, []Value, *Dict, int) (Value, error) { return o.clone(), nil }), true
		case "update", "pop", "setdefault", "clear", "popitem":
			return builtin(func(_ *evaluator, _ []Value, _ *Dict, line int) (Value, error) {
				return nil, &RuntimeError{line, "dict." + name + " changes a value, which the sandbox does not allow"}
			}), true
		}
	case *List:
		switch name {
		case "index":
			return builtin(func(ev *evaluator, args []Value, kw *Dict, line int) (Value, error) {
				if len(args) != 1 {
					return nil, &RuntimeError{line, "list.index takes one argument"}
				}
				for i, it := range o.Items {
					if equal(it, args[0]) {
						return int64(i), nil
					}
				}
				return nil, &RuntimeError{line, repr(args[0]) + " is not in list"}
			}), true
		case "count":
			return builtin(func(ev *evaluator, args []Value, kw *Dict, line int) (Value, error) {
				if len(args) != 1 {
					return nil, &RuntimeError{line, "list.count takes one argument"}
				}
				n := int64(0)
				for _, it := range o.Items {
					if equal(it, args[0]) {
						n++
					}
				}
				return n, nil
			}), true
		case "append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear":
			return builtin(func(_ *evaluator, _ []Value, _ *Dict, line int) (Value, error) {
				return nil, &RuntimeError{line, "list." + name + " changes a value, which the sandbox does not allow"}
			}), true
		}
	}
	return nil, false
}

type strMethod func(ev *evaluator, s string, a callArgs) (Value, error)

var strMethods map[string]strMethod

func init() {
	strMethods = map[string]strMethod{
		"strip":      stripMethod(true, true),
		"lstrip":     stripMethod(true, false),
		"rstrip":     stripMethod(false, true),
		"split":      splitMethod(false),
		"rsplit":     splitMethod(true),
		"startswith": affixMethod(func(s, p string) bool { return strings.HasPrefix(s, p) }),
		"endswith":   affixMethod(func(s, p string) bool { return strings.HasSuffix(s, p) }),
		"upper":      plainStr(strings.ToUpper),
		"lower":      plainStr(strings.ToLower),
		"title":      plainStr(pyTitle),
		"capitalize": plainStr(capitalize),
		"replace":    replaceWith,
		"find":       findMethod(false, false),
		"rfind":      findMethod(true, false),
		"index":      findMethod(false, true),
		"count": func(ev *evaluator, s string, a callArgs) (Value, error) {
			sub, err := a.str(0, "sub", "")
			if err != nil {
				return nil, err
			}
			if sub == "" {
				return int64(utf8.RuneCountInString(s) + 1), nil
			}
			return int64(strings.Count(s, sub)), nil
		},
		"join": func(ev *evaluator, s string, a callArgs) (Value, error) {
			if len(a.pos) != 1 {
				return nil, a.errf("takes one iterable")
			}
			items, err := ev.iterate(a.pos[0], a.line)
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				str, ok := it.(string)
				if !ok {
					return nil, a.errf("sequence item %d: expected str instance, %s found", i, typeName(it))
				}
				parts[i] = str
			}
			return pyJoin(ev, parts, s, a.line)
		},
		"splitlines": func(ev *evaluator, s string, a callArgs) (Value, error) {
			var items []Value
			if s != "" {
				for _, l := range pySplitlines(s) {
					items = append(items, l)
				}
			}
			return &List{Items: items}, nil
		},
		"format":  strFormat,
		"isdigit": strTest(func(r rune) bool { return unicode.IsDigit(r) }),
		"isalpha": strTest(unicode.IsLetter),
		"isspace": strTest(isPySpace),
		"isalnum": strTest(func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }),
		"isupper": func(ev *evaluator, s string, a callArgs) (Value, error) {
			return strings.ToUpper(s) == s && strings.ToLower(s) != s, nil
		},
		"islower": func(ev *evaluator, s string, a callArgs) (Value, error) {
			return strings.ToLower(s) == s && strings.ToUpper(s) != s, nil
		},
	}
}

func pyJoin(ev *evaluator, parts []string, sep string, line int) (Value, error) {
	n := len(sep) * len(parts)
	for _, p := range parts {
		n += len(p)
	}
	if n > ev.lim.MaxOutput {
		return nil, &RuntimeError{line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
	}
	return strings.Join(parts, sep), nil
}

func plainStr(fn func(string) string) strMethod {
	return func(ev *evaluator, s string, a callArgs) (Value, error) { return fn(s), nil }
}

func strTest(fn func(rune) bool) strMethod {
	return func(ev *evaluator, s string, a callArgs) (Value, error) {
		if s == "" {
			return false, nil
		}
		for _, r := range s {
			if !fn(r) {
				return false, nil
			}
		}
		return true, nil
	}
}

func stripMethod(left, right bool) strMethod {
	return func(ev *evaluator, s string, a callArgs) (Value, error) {
		chars := a.get(0, "chars", nil)
		cut := isPySpace
		if chars != nil {
			set, ok := chars.(string)
			if !ok {
				return nil, a.errf("strip arg must be None or str")
			}
			cut = func(r rune) bool { return strings.ContainsRune(set, r) }
		}
		if left {
			s = strings.TrimLeftFunc(s, cut)
		}
		if right {
			s = strings.TrimRightFunc(s, cut)
		}
		return s, nil
	}
}

func splitMethod(fromRight bool) strMethod {
	return func(ev *evaluator, s string, a callArgs) (Value, error) {
		sepV := a.get(0, "sep", nil)
		maxsplit, err := a.integer(1, "maxsplit", -1)
		if err != nil {
			return nil, err
		}
		var parts []string
		if sepV == nil {
			parts = splitWhitespace(s, maxsplit, fromRight)
		} else {
			sep, ok := sepV.(string)
			if !ok {
				return nil, a.errf("must be str or None, not %s", typeName(sepV))
			}
			if sep == "" {
				return nil, a.errf("empty separator")
			}
			switch {
			case maxsplit < 0:
				parts = strings.Split(s, sep)
			case !fromRight:
				parts = strings.SplitN(s, sep, int(maxsplit)+1)
			default:
				parts = rsplitN(s, sep, int(maxsplit))
			}
		}
		if len(parts) > ev.lim.MaxItems {
			return nil, &RuntimeError{a.line, fmt.Sprintf("%v: split into more than %d parts", ErrLimit, ev.lim.MaxItems)}
		}
		items := make([]Value, len(parts))
		for i, p := range parts {
			items[i] = p
		}
		return &List{Items: items}, nil
	}
}

func rsplitN(s, sep string, n int) []string {
	var out []string
	for n > 0 {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		out = append(out, s[i+len(sep):])
		s = s[:i]
		n--
	}
	out = append(out, s)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// splitWhitespace is str.split() with no separator: runs of whitespace
// separate, and leading and trailing whitespace gives no empty parts.
func splitWhitespace(s string, maxsplit int64, fromRight bool) []string {
	if fromRight {
		// Split from the left on the reversed words, then restore the tail.
		fields := strings.FieldsFunc(s, isPySpace)
		if maxsplit < 0 || int64(len(fields)) <= maxsplit+1 {
			return fields
		}
		t := strings.TrimRightFunc(s, isPySpace)
		var out []string
		for i := int64(0); i < maxsplit; i++ {
			j := strings.LastIndexFunc(t, isPySpace)
			out = append([]string{t[j+1:]}, out...)
			t = strings.TrimRightFunc(t[:j+1], isPySpace)
		}
		return append([]string{t}, out...)
	}
	var out []string
	t := strings.TrimLeftFunc(s, isPySpace)
	for t != "" {
		if maxsplit >= 0 && int64(len(out)) == maxsplit {
			out = append(out, t)
			break
		}
		j := strings.IndexFunc(t, isPySpace)
		if j < 0 {
			out = append(out, t)
			break
		}
		out = append(out, t[:j])
		t = strings.TrimLeftFunc(t[j:], isPySpace)
	}
	return out
}

func affixMethod(test func(s, p string) bool) strMethod {
	return func(ev *evaluator, s string, a callArgs) (Value, error) {
		if len(a.pos) < 1 {
			return nil, a.errf("takes at least 1 argument")
		}
		rs := []rune(s)
		lo, hi := 0, len(rs)
		if len(a.pos) > 1 && a.pos[1] != nil {
			n, ok := asInt(a.pos[1])
			if !ok {
				return nil, a.errf("slice indices must be integers or None")
			}
			lo = clampIndex(n, len(rs))
		}
		if len(a.pos) > 2 && a.pos[2] != nil {
			n, ok := asInt(a.pos[2])
			if !ok {
				return nil, a.errf("slice indices must be integers or None")
			}
			hi = clampIndex(n, len(rs))
		}
		sub := ""
		if lo <= hi {
			sub = string(rs[lo:hi])
		} else if lo > len(rs) {
			return false, nil
		}
		switch p := a.pos[0].(type) {
		case string:
			return test(sub, p), nil
		case *List:
			if !p.Tuple {
				break
			}
			for _, it := range p.Items {
				ps, ok := it.(string)
				if !ok {
					return nil, a.errf("tuple for startswith/endswith must only contain str")
				}
				if test(sub, ps) {
					return true, nil
				}
			}
			return false, nil
		}
		return nil, a.errf("first arg must be str or a tuple of str, not %s", typeName(a.pos[0]))
	}
}

func clampIndex(n int64, ln int) int {
	if n < 0 {
		n += int64(ln)
		if n < 0 {
			n = 0
		}
	}
	if n > int64(ln) {
		n = int64(ln)
	}
	return int(n)
}

func findMethod(fromRight, raise bool) strMethod {
	return func(ev *evaluator, s string, a callArgs) (Value, error) {
		sub, err := a.str(0, "sub", "")
		if err != nil {
			return nil, err
		}
		var i int
		if fromRight {
			i = strings.LastIndex(s, sub)
		} else {
			i = strings.Index(s, sub)
		}
		if i < 0 {
			if raise {
				return nil, a.errf("substring not found")
			}
			return int64(-1), nil
		}
		return int64(utf8.RuneCountInString(s[:i])), nil
	}
}

// strftime formats t with the C directives Python's strftime knows that
// chat templates use (glibc's "-" flag drops padding, as in "%-d").
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' || i+1 >= len(f) {
			b.WriteByte(c)
			continue
		}
		i++
		noPad := false
		if f[i] == '-' && i+1 < len(f) {
			noPad = true
			i++
		}
		num := func(n, width int) {
			if noPad {
				fmt.Fprintf(&b, "%d", n)
			} else {
				fmt.Fprintf(&b, "%0*d", width, n)
			}
		}
		switch f[i] {
		case 'd':
			num(t.Day(), 2)
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'm':
			num(int(t.Month()), 2)
		case 'Y':
			num(t.Year(), 4)
		case 'y':
			num(t.Year()%100, 2)
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'M':
			num(t.Minute(), 2)
		case 'S':
			num(t.Second(), 2)
		case 'j':
			num(t.YearDay(), 3)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday()))
		case 'Z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'z':
			b.WriteString(t.Format("-0700"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if noPad {
				b.WriteByte('-')
			}
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// strFormat is str.format for replacement fields {}, {0} and {name}
// (no format specs), with {{ and }} for braces.
func strFormat(ev *evaluator, s string, a callArgs) (Value, error) {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			b.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return nil, a.errf("Single '{' encountered in format string")
			}
			field := s[i+1 : i+j]
			i += j
			var v Value
			switch {
			case field == "":
				if auto >= len(a.pos) {
					return nil, a.errf("Replacement index %d out of range for positional args tuple", auto)
				}
				v = a.pos[auto]
				auto++
			case field[0] >= '0' && field[0] <= '9':
				k, err := strconv.Atoi(field)
				if err != nil || k >= len(a.pos) {
					return nil, a.errf("Replacement index %s out of range for positional args tuple", field)
				}
				v = a.pos[k]
			default:
				x, ok := a.kw.Get(field)
				if !ok {
					return nil, a.errf("KeyError: %s", repr(field))
				}
				v = x
			}
			b.WriteString(toStr(v))
		case c == '}':
			return nil, a.errf("Single '}' encountered in format string")
		default:
			b.WriteByte(c)
		}
		if b.Len() > ev.lim.MaxOutput {
			return nil, &RuntimeError{a.line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
		}
	}
	return b.String(), nil
}
