package jinja

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// globals are the functions every template can call: Jinja2's own that
// chat templates use, and the two transformers adds.
var globals = map[string]builtin{
	"range": func(ev *evaluator, args []Value, _ *Dict, line int) (Value, error) {
		var lo, hi, st int64 = 0, 0, 1
		ints := make([]int64, len(args))
		for i, a := range args {
			n, ok := asInt(a)
			if !ok {
				return nil, &RuntimeError{line, fmt.Sprintf("range() needs integers, got '%s'", typeName(a))}
			}
			ints[i] = n
		}
		switch len(ints) {
		case 1:
			hi = ints[0]
		case 2:
			lo, hi = ints[0], ints[1]
		case 3:
			lo, hi, st = ints[0], ints[1], ints[2]
		default:
			return nil, &RuntimeError{line, fmt.Sprintf("range expected 1 to 3 arguments, got %d", len(args))}
		}
		if st == 0 {
			return nil, &RuntimeError{line, "range() arg 3 must not be zero"}
		}
		var n int64
		if st > 0 && hi > lo {
			n = (hi - lo + st - 1) / st
		} else if st < 0 && lo > hi {
			n = (lo - hi - st - 1) / -st
		}
		if n > int64(ev.lim.MaxItems) {
			return nil, &RuntimeError{line, fmt.Sprintf("%v: range of %d items (at most %d)", ErrLimit, n, ev.lim.MaxItems)}
		}
		items := make([]Value, n)
		for i := range items {
			items[i] = lo + int64(i)*st
		}
		return &List{Items: items}, nil
	},
	"namespace": func(ev *evaluator, args []Value, kwargs *Dict, line int) (Value, error) {
		ns := &Namespace{attrs: NewDict()}
		for _, a := range args {
			d, ok := a.(*Dict)
			if !ok {
				return nil, &RuntimeError{line, "namespace() takes a dict or keyword arguments"}
			}
			for i, k := range d.keys {
				ns.attrs.Set(k, d.vals[i])
			}
		}
		for i, k := range kwargs.keys {
			ns.attrs.Set(k, kwargs.vals[i])
		}
		return ns, nil
	},
	"dict": func(ev *evaluator, args []Value, kwargs *Dict, line int) (Value, error) {
		d := NewDict()
		for _, a := range args {
			src, ok := a.(*Dict)
			if !ok {
				return nil, &RuntimeError{line, "dict() takes a dict or keyword arguments"}
			}
			for i, k := range src.keys {
				d.Set(k, src.vals[i])
			}
		}
		for i, k := range kwargs.keys {
			d.Set(k, kwargs.vals[i])
		}
		return d, nil
	},
	"raise_exception": func(ev *evaluator, args []Value, _ *Dict, line int) (Value, error) {
		msg := ""
		if len(args) > 0 {
			msg = toStr(args[0])
		}
		return nil, &RaisedError{line, msg}
	},
	"strftime_now": func(ev *evaluator, args []Value, _ *Dict, line int) (Value, error) {
		if len(args) != 1 {
			return nil, &RuntimeError{line, "strftime_now() takes one format string"}
		}
		f, ok := args[0].(string)
		if !ok {
			return nil, &RuntimeError{line, "strftime_now() takes one format string"}
		}
		return strftime(ev.now(), f), nil
	},
	"joiner": func(ev *evaluator, args []Value, kwargs *Dict, line int) (Value, error) {
		sep := Value(", ")
		if len(args) > 0 {
			sep = args[0]
		} else if v, ok := kwargs.Get("sep"); ok {
			sep = v
		}
		used := false
		return builtin(func(*evaluator, []Value, *Dict, int) (Value, error) {
			if !used {
				used = true
				return "", nil
			}
			return sep, nil
		}), nil
	},
}

// ---------------------------------------------------------------- argument helpers

type callArgs struct {
	pos  []Value
	kw   *Dict
	name string
	line int
}

// get returns argument i (positional) or the keyword name, or def.
func (a callArgs) get(i int, name string, def Value) Value {
	if i >= 0 && i < len(a.pos) {
		return a.pos[i]
	}
	if a.kw != nil {
		if v, ok := a.kw.Get(name); ok {
			return v
		}
	}
	return def
}

func (a callArgs) errf(format string, x ...any) error {
	return &RuntimeError{a.line, a.name + ": " + fmt.Sprintf(format, x...)}
}

func (a callArgs) str(i int, name, def string) (string, error) {
	v := a.get(i, name, def)
	s, ok := v.(string)
	if !ok {
		return "", a.errf("argument %s must be a string, not %s", name, typeName(v))
	}
	return s, nil
}

func (a callArgs) integer(i int, name string, def int64) (int64, error) {
	v := a.get(i, name, def)
	n, ok := asInt(v)
	if !ok {
		return 0, a.errf("argument %s must be an integer, not %s", name, typeName(v))
	}
	return n, nil
}

// ---------------------------------------------------------------- filters

type filterFunc func(ev *evaluator, v Value, a callArgs) (Value, error)

var filters map[string]filterFunc

func init() {
	filters = map[string]filterFunc{
		"length":     fLength,
		"count":      fLength,
		"upper":      strFilter(strings.ToUpper),
		"lower":      strFilter(strings.ToLower),
		"title":      strFilter(jinjaTitle),
		"capitalize": strFilter(capitalize),
		"trim":       fTrim,
		"replace":    fReplace,
		"join":       fJoin,
		"tojson":     fToJSON,
		"first":      fFirst,
		"last":       fLast,
		"list":       fList,
		"string":     func(ev *evaluator, v Value, a callArgs) (Value, error) { return toStr(v), nil },
		"safe":       func(ev *evaluator, v Value, a callArgs) (Value, error) { return v, nil },
		"escape":     strFilter(htmlEscape),
		"e":          strFilter(htmlEscape),
		"int":        fInt,
		"float":      fFloat,
		"abs":        fAbs,
		"round":      fRound,
		"default":    fDefault,
		"d":          fDefault,
		"items":      fItems,
		"dictsort":   fDictsort,
		"indent":     fIndent,
		"map":        fMap,
		"select":     selectFilter(false, false),
		"reject":     selectFilter(true, false),
		"selectattr": selectFilter(false, true),
		"rejectattr": selectFilter(true, true),
		"unique":     fUnique,
		"reverse":    fReverse,
		"sort":       fSort,
		"sum":        fSum,
		"min":        minMax(-1),
		"max":        minMax(1),
		"wordcount": func(ev *evaluator, v Value, a callArgs) (Value, error) {
			return int64(len(strings.FieldsFunc(toStr(v), isPySpace))), nil
		},
		"center": fCenter,
		"format": func(ev *evaluator, v Value, a callArgs) (Value, error) {
			return printf(ev, toStr(v), a.pos, a.line)
		},
	}
}

func (ev *evaluator) applyFilter(f *filterExpr, v Value, sc *scope) (Value, error) {
	fn, ok := filters[f.name]
	if !ok {
		return nil, &RuntimeError{f.line, "no filter named '" + f.name + "'" + didYouMean(f.name, filters)}
	}
	args, kwargs, err := ev.evalArgs(f.args, f.kwargs, sc)
	if err != nil {
		return nil, err
	}
	return fn(ev, v, callArgs{args, kwargs, f.name, f.line})
}

func strFilter(fn func(string) string) filterFunc {
	return func(ev *evaluator, v Value, a callArgs) (Value, error) { return fn(toStr(v)), nil }
}

func fLength(ev *evaluator, v Value, a callArgs) (Value, error) {
	switch x := v.(type) {
	case string:
		return int64(utf8.RuneCountInString(x)), nil
	case *List:
		return int64(len(x.Items)), nil
	case *Dict:
		return int64(x.Len()), nil
	case *Namespace:
		return int64(x.attrs.Len()), nil
	case Undefined:
		return int64(0), nil
	}
	return nil, a.errf("object of type '%s' has no len()", typeName(v))
}

func fTrim(ev *evaluator, v Value, a callArgs) (Value, error) {
	chars := a.get(0, "chars", nil)
	if chars == nil {
		return strings.TrimFunc(toStr(v), isPySpace), nil
	}
	return strings.Trim(toStr(v), toStr(chars)), nil
}

func fReplace(ev *evaluator, v Value, a callArgs) (Value, error) {
	return replaceWith(ev, toStr(v), a)
}

// replaceWith is str.replace(old, new[, count]) and the replace filter.
func replaceWith(ev *evaluator, s string, a callArgs) (Value, error) {
	old, err := a.str(0, "old", "")
	if err != nil {
		return nil, err
	}
	nw, err := a.str(1, "new", "")
	if err != nil {
		return nil, err
	}
	n, err := a.integer(2, "count", -1)
	if err != nil {
		return nil, err
	}
	return pyReplace(ev, s, old, nw, n, a.line)
}

func pyReplace(ev *evaluator, s, old, nw string, n int64, line int) (Value, error) {
	if n < 0 {
		n = -1
	}
	count := int64(strings.Count(s, old))
	if old == "" {
		count = int64(utf8.RuneCountInString(s)) + 1
	}
	if n >= 0 && n < count {
		count = n
	}
	if int64(len(s))+count*int64(len(nw)-len(old)) > int64(ev.lim.MaxOutput) {
		return nil, &RuntimeError{line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
	}
	return strings.Replace(s, old, nw, int(n)), nil
}

func fJoin(ev *evaluator, v Value, a callArgs) (Value, error) {
	sep, err := a.str(0, "d", "")
	if err != nil {
		return nil, err
	}
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	attr := a.get(1, "attribute", nil)
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteString(sep)
		}
		if attr != nil {
			if it, err = ev.getAttrPath(it, attr, a.line); err != nil {
				return nil, err
			}
		}
		b.WriteString(toStr(it))
		if b.Len() > ev.lim.MaxOutput {
			return nil, &RuntimeError{a.line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
		}
	}
	return b.String(), nil
}

// getAttrPath reads an attribute given as "a.b" or an index, as Jinja2's
// attribute= arguments do.
func (ev *evaluator) getAttrPath(v, attr Value, line int) (Value, error) {
	s, ok := attr.(string)
	if !ok {
		return ev.getItem(v, attr, line)
	}
	for _, part := range strings.Split(s, ".") {
		var err error
		if n, e := strconv.Atoi(part); e == nil {
			v, err = ev.getItem(v, int64(n), line)
		} else {
			v, err = ev.getItem(v, part, line)
		}
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

func fToJSON(ev *evaluator, v Value, a callArgs) (Value, error) {
	// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
	o := &jsonOptions{itemSep: ", ", kSep: ": "}
	ascii := truthy(a.get(0, "ensure_ascii", false))
	indent := a.get(1, "indent", nil)
	switch x := indent.(type) {
	case nil:
	case int64:
		o.indented = true
		o.indent = strings.Repeat(" ", int(max(x, 0)))
	case string:
		o.indented = true
		o.indent = x
	default:
		return nil, a.errf("indent must be an integer or a string")
	}
	if o.indented {
		o.itemSep = ","
	}
	if seps := a.get(2, "separators", nil); seps != nil {
		l, ok := seps.(*List)
		if !ok || len(l.Items) != 2 {
			return nil, a.errf("separators must be a pair of strings")
		}
		s1, ok1 := l.Items[0].(string)
		s2, ok2 := l.Items[1].(string)
		if !ok1 || !ok2 {
			return nil, a.errf("separators must be a pair of strings")
		}
		o.itemSep, o.kSep = s1, s2
	}
	o.sortKeys = truthy(a.get(3, "sort_keys", false))
	var b strings.Builder
	budget := ev.lim.MaxItems
	if err := toJSON(&b, v, o, 0, &budget); err != nil {
		return nil, &RuntimeError{a.line, err.Error()}
	}
	if b.Len() > ev.lim.MaxOutput {
		return nil, &RuntimeError{a.line, fmt.Sprintf("%v: JSON longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
	}
	if ascii {
		return asciiEscape(b.String()), nil
	}
	return b.String(), nil
}

// asciiEscape turns non-ASCII characters of JSON text into \u escapes, as
// json.dumps(ensure_ascii=True) writes them.
func asciiEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x80:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func fFirst(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Name: "first"}, nil
	}
	return items[0], nil
}

func fLast(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return Undefined{Name: "last"}, nil
	}
	return items[len(items)-1], nil
}

func fList(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	return &List{Items: append([]Value(nil), items...)}, nil
}

func fInt(ev *evaluator, v Value, a callArgs) (Value, error) {
	def := a.get(0, "default", int64(0))
	switch x := v.(type) {
	case int64:
		return x, nil
	case bool:
		n, _ := asInt(x)
		return n, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return def, nil
		}
		return int64(x), nil
	case string:
		s := strings.TrimFunc(x, isPySpace)
		if n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64); err == nil {
			return n, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return int64(f), nil
		}
	}
	return def, nil
}

func fFloat(ev *evaluator, v Value, a callArgs) (Value, error) {
	def := a.get(0, "default", 0.0)
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case bool:
		n, _ := number(x)
		return n, nil
	case float64:
		return x, nil
	case string:
		if f, err := strconv.ParseFloat(strings.TrimFunc(x, isPySpace), 64); err == nil {
			return f, nil
		}
	}
	return def, nil
}

func fAbs(ev *evaluator, v Value, a callArgs) (Value, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return -x, nil
		}
		return x, nil
	case float64:
		return math.Abs(x), nil
	case bool:
		n, _ := asInt(x)
		return n, nil
	}
	return nil, a.errf("bad operand type for abs(): '%s'", typeName(v))
}

func fRound(ev *evaluator, v Value, a callArgs) (Value, error) {
	f, ok := number(v)
	if !ok {
		return nil, a.errf("round needs a number, not %s", typeName(v))
	}
	p, err := a.integer(0, "precision", 0)
	if err != nil {
		return nil, err
	}
	method, err := a.str(1, "method", "common")
	if err != nil {
		return nil, err
	}
	scale := math.Pow(10, float64(p))
	switch method {
	case "common":
		return math.RoundToEven(f*scale) / scale, nil
	case "ceil":
		return math.Ceil(f*scale) / scale, nil
	case "floor":
		return math.Floor(f*scale) / scale, nil
	}
	return nil, a.errf("method must be common, ceil or floor")
}

func fDefault(ev *evaluator, v Value, a callArgs) (Value, error) {
	def := a.get(0, "default_value", "")
	boolean := truthy(a.get(1, "boolean", false))
	if _, undef := v.(Undefined); undef || boolean && !truthy(v) {
		return def, nil
	}
	return v, nil
}

func fItems(ev *evaluator, v Value, a callArgs) (Value, error) {
	switch x := v.(type) {
	case Undefined:
		return &List{}, nil
	case *Dict:
		return dictItems(x), nil
	}
	return nil, a.errf("can only get item pairs from a mapping, not %s", typeName(v))
}

func dictItems(d *Dict) *List {
	items := make([]Value, d.Len())
	for i, k := range d.keys {
		items[i] = &List{Items: []Value{k, d.vals[i]}, Tuple: true}
	}
	return &List{Items: items}
}

// sortKey lowers strings for case-insensitive sorting, as Jinja2 does.
func sortKey(v Value, caseSensitive bool) Value {
	if s, ok := v.(string); ok && !caseSensitive {
		return strings.ToLower(s)
	}
	return v
}

func sortValues(items []Value, key func(Value) Value, reverse bool, line int) error {
	var bad error
	sort.SliceStable(items, func(i, j int) bool {
		c, ok := compare(key(items[i]), key(items[j]))
		if !ok && bad == nil {
			bad = &RuntimeError{line, fmt.Sprintf("'<' not supported between instances of '%s' and '%s'", typeName(key(items[i])), typeName(key(items[j])))}
		}
		if reverse {
			return c > 0
		}
		return c < 0
	})
	return bad
}

func fDictsort(ev *evaluator, v Value, a callArgs) (Value, error) {
	d, ok := v.(*Dict)
	if !ok {
		return nil, a.errf("dictsort needs a mapping, not %s", typeName(v))
	}
	cs := truthy(a.get(0, "case_sensitive", false))
	by, err := a.str(1, "by", "key")
	if err != nil {
		return nil, err
	}
	rev := truthy(a.get(2, "reverse", false))
	idx := 0
	if by == "value" {
		idx = 1
	} else if by != "key" {
		return nil, a.errf("You can only sort by either 'key' or 'value'")
	}
	items := dictItems(d).Items
	err = sortValues(items, func(x Value) Value { return sortKey(x.(*List).Items[idx], cs) }, rev, a.line)
	return &List{Items: items}, err
}

func fIndent(ev *evaluator, v Value, a callArgs) (Value, error) {
	s := toStr(v)
	var ind string
	switch w := a.get(0, "width", int64(4)).(type) {
	case string:
		ind = w
	default:
		n, ok := asInt(w)
		if !ok {
			return nil, a.errf("width must be an integer or a string")
		}
		ind = strings.Repeat(" ", int(max(n, 0)))
	}
	first := truthy(a.get(1, "first", false))
	blank := truthy(a.get(2, "blank", false))
	lines := pySplitlines(s + "\n")
	var rv string
	if blank {
		rv = strings.Join(lines, "\n"+ind)
	} else {
		rv = lines[0]
		if len(lines) > 1 {
			rest := make([]string, len(lines)-1)
			for i, l := range lines[1:] {
				if l != "" {
					l = ind + l
				}
				rest[i] = l
			}
			rv += "\n" + strings.Join(rest, "\n")
		}
	}
	if first {
		rv = ind + rv
	}
	return rv, nil
}

// pySplitlines is Python's str.splitlines() without keepends.
func pySplitlines(s string) []string {
	var out []string
	rs := []rune(s)
	start := 0
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '\n', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			out = append(out, string(rs[start:i]))
			start = i + 1
		case '\r':
			out = append(out, string(rs[start:i]))
			if i+1 < len(rs) && rs[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	if start < len(rs) {
		out = append(out, string(rs[start:]))
	}
	if out == nil {
		out = []string{""}
	}
	return out
}

func fMap(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(items))
	if attr, ok := a.kw.Get("attribute"); ok {
		def, hasDef := a.kw.Get("default")
		for i, it := range items {
			x, err := ev.getAttrPath(it, attr, a.line)
			if err != nil {
				return nil, err
			}
			if _, undef := x.(Undefined); undef && hasDef {
				x = def
			}
			out[i] = x
		}
		return &List{Items: out}, nil
	}
	if len(a.pos) == 0 {
		return nil, a.errf("map needs a filter name or attribute=")
	}
	name, ok := a.pos[0].(string)
	fn, found := filters[name]
	if !ok || !found {
		return nil, a.errf("no filter named '%s'%s", toStr(a.pos[0]), didYouMean(toStr(a.pos[0]), filters))
	}
	sub := callArgs{a.pos[1:], a.kw, name, a.line}
	for i, it := range items {
		x, err := fn(ev, it, sub)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return &List{Items: out}, nil
}

func selectFilter(reject, byAttr bool) filterFunc {
	return func(ev *evaluator, v Value, a callArgs) (Value, error) {
		items, err := ev.iterate(v, a.line)
		if err != nil {
			return nil, err
		}
		rest := a.pos
		var attr Value
		if byAttr {
			if len(rest) == 0 {
				return nil, a.errf("missing attribute name")
			}
			attr, rest = rest[0], rest[1:]
		}
		var test testFunc
		var targs []Value
		if len(rest) > 0 {
			name := toStr(rest[0])
			t, ok := tests[name]
			if !ok {
				return nil, a.errf("no test named '%s'%s", name, didYouMean(name, tests))
			}
			test, targs = t, rest[1:]
		}
		var out []Value
		for _, it := range items {
			x := it
			if byAttr {
				if x, err = ev.getAttrPath(it, attr, a.line); err != nil {
					return nil, err
				}
			}
			ok := truthy(x)
			if test != nil {
				if ok, err = test(ev, x, targs, a.line); err != nil {
					return nil, err
				}
			}
			if ok != reject {
				out = append(out, it)
			}
		}
		return &List{Items: out}, nil
	}
}

func fUnique(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	cs := truthy(a.get(0, "case_sensitive", false))
	attr := a.get(1, "attribute", nil)
	seen := map[string]bool{}
	var out []Value
	for _, it := range items {
		k := it
		if attr != nil {
			if k, err = ev.getAttrPath(it, attr, a.line); err != nil {
				return nil, err
			}
		}
		h := hashKey(sortKey(k, cs))
		if !seen[h] {
			seen[h] = true
			out = append(out, it)
		}
	}
	return &List{Items: out}, nil
}

func fReverse(ev *evaluator, v Value, a callArgs) (Value, error) {
	if s, ok := v.(string); ok {
		rs := []rune(s)
		for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
			rs[i], rs[j] = rs[j], rs[i]
		}
		return string(rs), nil
	}
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(items))
	for i, it := range items {
		out[len(items)-1-i] = it
	}
	return &List{Items: out}, nil
}

func fSort(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	items = append([]Value(nil), items...)
	rev := truthy(a.get(0, "reverse", false))
	cs := truthy(a.get(1, "case_sensitive", false))
	attr := a.get(2, "attribute", nil)
	var lookupErr error
	key := func(x Value) Value {
		if attr != nil {
			y, err := ev.getAttrPath(x, attr, a.line)
			if err != nil && lookupErr == nil {
				lookupErr = err
			}
			x = y
		}
		return sortKey(x, cs)
	}
	if err := sortValues(items, key, rev, a.line); err != nil {
		return nil, err
	}
	return &List{Items: items}, lookupErr
}

func fSum(ev *evaluator, v Value, a callArgs) (Value, error) {
	items, err := ev.iterate(v, a.line)
	if err != nil {
		return nil, err
	}
	attr := a.get(0, "attribute", nil)
	total := a.get(1, "start", int64(0))
	for _, it := range items {
		if attr != nil {
			if it, err = ev.getAttrPath(it, attr, a.line); err != nil {
				return nil, err
			}
		}
		if total, err = ev.arith("+", total, it, a.line); err != nil {
			return nil, err
		}
	}
	return total, nil
}

func minMax(sign int) filterFunc {
	return func(ev *evaluator, v Value, a callArgs) (Value, error) {
		items, err := ev.iterate(v, a.line)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return Undefined{}, nil
		}
		cs := truthy(a.get(0, "case_sensitive", false))
		best := items[0]
		for _, it := range items[1:] {
			c, ok := compare(sortKey(it, cs), sortKey(best, cs))
			if !ok {
				return nil, a.errf("cannot compare %s and %s", typeName(it), typeName(best))
			}
			if c*sign > 0 {
				best = it
			}
		}
		return best, nil
	}
}

func fCenter(ev *evaluator, v Value, a callArgs) (Value, error) {
	s := toStr(v)
	w, err := a.integer(0, "width", 80)
	if err != nil {
		return nil, err
	}
	n := int64(utf8.RuneCountInString(s))
	if w <= n {
		return s, nil
	}
	if w > int64(ev.lim.MaxOutput) {
		return nil, &RuntimeError{a.line, fmt.Sprintf("%v: width %d", ErrLimit, w)}
	}
	pad := w - n
	left := pad / 2
	if pad%2 == 1 && w%2 == 1 {
		left++
	}
	return strings.Repeat(" ", int(left)) + s + strings.Repeat(" ", int(pad-left)), nil
}

// jinjaTitle is Jinja2's title filter: words begin after '-', whitespace,
// or an opening bracket; the first letter is upper-cased, the rest lowered.
func jinjaTitle(s string) string {
	var b strings.Builder
	start := true
	for _, r := range s {
		switch {
		case r == '-' || r == '(' || r == '{' || r == '[' || r == '<' || isPySpace(r):
			b.WriteRune(r)
			start = true
		case start:
			b.WriteString(strings.ToUpper(string(r)))
			start = false
		default:
			b.WriteString(strings.ToLower(string(r)))
		}
	}
	return b.String()
}

// pyTitle is Python's str.title(): a letter after a non-letter starts a word.
func pyTitle(s string) string {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) && !prevCased:
			b.WriteString(strings.ToUpper(string(r)))
			prevCased = true
		case unicode.IsLetter(r):
			b.WriteString(strings.ToLower(string(r)))
		default:
			b.WriteRune(r)
			prevCased = false
		}
	}
	return b.String()
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return strings.ToUpper(string(r)) + strings.ToLower(s[n:])
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// ---------------------------------------------------------------- tests

type testFunc func(ev *evaluator, v Value, args []Value, line int) (bool, error)

var tests map[string]testFunc

func init() {
	cmp := func(op string) testFunc {
		return func(ev *evaluator, v Value, args []Value, line int) (bool, error) {
			if len(args) != 1 {
				return false, &RuntimeError{line, "comparison test needs one argument"}
			}
			return ev.compareOp(op, v, args[0], line)
		}
	}
	is := func(f func(Value) bool) testFunc {
		return func(ev *evaluator, v Value, args []Value, line int) (bool, error) { return f(v), nil }
	}
	tests = map[string]testFunc{
		"defined":   is(func(v Value) bool { _, u := v.(Undefined); return !u }),
		"undefined": is(func(v Value) bool { _, u := v.(Undefined); return u }),
		"none":      is(func(v Value) bool { return v == nil }),
		"boolean":   is(func(v Value) bool { _, ok := v.(bool); return ok }),
		"true":      is(func(v Value) bool { b, ok := v.(bool); return ok && b }),
		"false":     is(func(v Value) bool { b, ok := v.(bool); return ok && !b }),
		"integer":   is(func(v Value) bool { _, ok := v.(int64); return ok }),
		"float":     is(func(v Value) bool { _, ok := v.(float64); return ok }),
		"number":    is(func(v Value) bool { _, ok := number(v); return ok }),
		"string":    is(func(v Value) bool { _, ok := v.(string); return ok }),
		"mapping":   is(func(v Value) bool { _, ok := v.(*Dict); return ok }),
		"sequence": is(func(v Value) bool {
			switch v.(type) {
			case string, *List, *Dict:
				return true
			}
			return false
		}),
		"iterable": is(func(v Value) bool {
			switch v.(type) {
			case string, *List, *Dict, Undefined:
				return true
			}
			return false
		}),
		"callable": is(func(v Value) bool {
			switch v.(type) {
			case builtin, *macro:
				return true
			}
			return false
		}),
		"lower": is(func(v Value) bool { s, ok := v.(string); return ok && s == strings.ToLower(s) }),
		"upper": is(func(v Value) bool { s, ok := v.(string); return ok && s == strings.ToUpper(s) }),
		"odd":   intTest(func(n int64) bool { return n%2 != 0 }),
		"even":  intTest(func(n int64) bool { return n%2 == 0 }),
		"divisibleby": func(ev *evaluator, v Value, args []Value, line int) (bool, error) {
			n, ok1 := asInt(v)
			if len(args) != 1 {
				return false, &RuntimeError{line, "divisibleby needs one argument"}
			}
			d, ok2 := asInt(args[0])
			if !ok1 || !ok2 || d == 0 {
				return false, &RuntimeError{line, "divisibleby needs non-zero integers"}
			}
			return n%d == 0, nil
		},
		"eq": cmp("=="), "equalto": cmp("=="), "==": cmp("=="),
		"ne": cmp("!="), "!=": cmp("!="),
		"lt": cmp("<"), "lessthan": cmp("<"), "<": cmp("<"),
		"le": cmp("<="), "<=": cmp("<="),
		"gt": cmp(">"), "greaterthan": cmp(">"), ">": cmp(">"),
		"ge": cmp(">="), ">=": cmp(">="),
		"in": cmp("in"),
		"sameas": func(ev *evaluator, v Value, args []Value, line int) (bool, error) {
			if len(args) != 1 {
				return false, &RuntimeError{line, "sameas needs one argument"}
			}
			switch x := v.(type) {
			case nil, bool:
				return v == args[0], nil
			case *List, *Dict, *Namespace:
				return x == args[0], nil
			}
			return equal(v, args[0]), nil
		},
	}
}

func intTest(f func(int64) bool) testFunc {
	return func(ev *evaluator, v Value, args []Value, line int) (bool, error) {
		n, ok := asInt(v)
		if !ok {
			if fl, isF := v.(float64); isF && fl == math.Trunc(fl) {
				return f(int64(fl)), nil
			}
			return false, &RuntimeError{line, fmt.Sprintf("test needs an integer, not %s", typeName(v))}
		}
		return f(n), nil
	}
}

func (ev *evaluator) applyTest(x *testExpr, sc *scope) (Value, error) {
	fn, ok := tests[x.name]
	if !ok {
		return nil, &RuntimeError{x.line, "no test named '" + x.name + "'" + didYouMean(x.name, tests)}
	}
	v, err := ev.eval(x.arg, sc)
	if err != nil {
		return nil, err
	}
	args, _, err := ev.evalArgs(x.args, nil, sc)
	if err != nil {
		return nil, err
	}
	r, err := fn(ev, v, args, x.line)
	if err != nil {
		return nil, err
	}
	return r != x.negate, nil
}

// printf is Python's "format % args" for the conversions templates use:
// %s, %r, %d and %i, %f with a precision, and %%.
func printf(ev *evaluator, format string, args []Value, line int) (Value, error) {
	var b strings.Builder
	n := 0
	next := func() (Value, error) {
		if n >= len(args) {
			return nil, &RuntimeError{line, "not enough arguments for format string"}
		}
		n++
		return args[n-1], nil
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		prec := -1
		if i < len(format) && format[i] == '.' {
			j := i + 1
			for j < len(format) && format[j] >= '0' && format[j] <= '9' {
				j++
			}
			p, err := strconv.Atoi(format[i+1 : j])
			if err != nil {
				return nil, &RuntimeError{line, "bad precision in format string"}
			}
			prec, i = p, j
		}
		if i >= len(format) {
			return nil, &RuntimeError{line, "incomplete format"}
		}
		switch format[i] {
		case '%':
			b.WriteByte('%')
		case 's', 'r', 'd', 'i', 'f':
			v, err := next()
			if err != nil {
				return nil, err
			}
			switch format[i] {
			case 's':
				b.WriteString(toStr(v))
			case 'r':
				b.WriteString(repr(v))
			case 'd', 'i':
				f, ok := number(v)
				if !ok {
					return nil, &RuntimeError{line, "%d format: a real number is required, not " + typeName(v)}
				}
				b.WriteString(strconv.FormatInt(int64(f), 10))
			case 'f':
				f, ok := number(v)
				if !ok {
					return nil, &RuntimeError{line, "%f format: a real number is required, not " + typeName(v)}
				}
				if prec < 0 {
					prec = 6
				}
				b.WriteString(strconv.FormatFloat(f, 'f', prec, 64))
			}
		default:
			return nil, &RuntimeError{line, fmt.Sprintf("unsupported format character %q", format[i])}
		}
		if b.Len() > ev.lim.MaxOutput {
			return nil, &RuntimeError{line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
		}
	}
	if n < len(args) {
		return nil, &RuntimeError{line, "not all arguments converted during string formatting"}
	}
	return b.String(), nil
}
