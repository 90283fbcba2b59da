package jinja

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Value is a template value: nil (None), Undefined, bool, int64, float64,
// string, *List, *Dict, *Namespace, or a callable (macro, builtin, method).
type Value = any

// Undefined is a name or item that does not exist. Like Jinja2's default
// Undefined it prints as nothing, is false, iterates as empty, and fails when
// used in arithmetic or when its attributes are read.
type Undefined struct {
	Name string
	// Hint, when set, is what using the value says instead of "'Name' is
	// undefined", as jinja2 says it: "list object has no element 0" for
	// messages[0] of an empty list, "'list object' has no attribute
	// 'startswith'" for a method that type lacks.
	Hint string
}

// List is a Python list (or tuple: Tuple is true). Templates cannot change
// lists (transformers renders in an immutable sandbox).
type List struct {
	Items []Value
	Tuple bool
}

// Dict is a Python dict with its insertion order, which tojson and
// iteration keep.
type Dict struct {
	keys  []Value
	vals  []Value
	index map[string]int
}

// NewDict returns an empty dict.
func NewDict() *Dict { return &Dict{index: map[string]int{}} }

// Set adds or replaces key.
func (d *Dict) Set(k, v Value) {
	h := hashKey(k)
	if i, ok := d.index[h]; ok {
		d.vals[i] = v
		return
	}
	d.index[h] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
}

// Get returns the value for key.
func (d *Dict) Get(k Value) (Value, bool) {
	i, ok := d.index[hashKey(k)]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// Len is the number of keys.
func (d *Dict) Len() int { return len(d.keys) }

// Keys returns the keys in insertion order.
func (d *Dict) Keys() []Value { return d.keys }

func (d *Dict) clone() *Dict {
	c := NewDict()
	for i, k := range d.keys {
		c.Set(k, d.vals[i])
	}
	return c
}

// hashKey maps equal Python keys to one string (1, 1.0 and True are one key).
func hashKey(k Value) string {
	switch v := k.(type) {
	case nil:
		return "n"
	case bool:
		if v {
			return "i1"
		}
		return "i0"
	case int64:
		return "i" + strconv.FormatInt(v, 10)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e18 {
			return "i" + strconv.FormatInt(int64(v), 10)
		}
		return "f" + strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return "s" + v
	case *List:
		parts := make([]string, len(v.Items))
		for i, x := range v.Items {
			parts[i] = hashKey(x)
		}
		return "t(" + strings.Join(parts, ",") + ")"
	}
	return fmt.Sprintf("p%p", k)
}

// Namespace is the object namespace() makes: attributes a template may set
// from inside loops.
type Namespace struct{ attrs *Dict }

// ---------------------------------------------------------------- conversion

// FromGo converts Go data (as encoding/json decodes it, or built by hand)
// into template values. Maps are ordered by key, since Go maps have no
// order; use FromJSON to keep a document's own key order.
func FromGo(x any) Value {
	switch v := x.(type) {
	case nil:
		return nil
	case Undefined, bool, int64, float64, string, *List, *Dict, *Namespace:
		return v
	case int:
		return int64(v)
	case int32:
		return int64(v)
	case float32:
		return float64(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		items := make([]Value, len(v))
		for i, e := range v {
			items[i] = FromGo(e)
		}
		return &List{Items: items}
	case []string:
		items := make([]Value, len(v))
		for i, e := range v {
			items[i] = e
		}
		return &List{Items: items}
	case []map[string]any:
		items := make([]Value, len(v))
		for i, e := range v {
			items[i] = FromGo(e)
		}
		return &List{Items: items}
	case map[string]any:
		return sortedDict(v)
	case map[string]string:
		return sortedDict(v)
	}
	return fmt.Sprintf("%v", x)
}

// sortedDict converts a Go map into a dict ordered by key.
func sortedDict[V any](m map[string]V) *Dict {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := NewDict()
	for _, k := range keys {
		d.Set(k, FromGo(m[k]))
	}
	return d
}

// FromJSON decodes a JSON document into template values, keeping the order
// of object keys (tools' parameter schemas are printed in that order).
func FromJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	v, err := decodeJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("extra data after the JSON value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder, depth int) (Value, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("JSON nests more than %d deep", maxNesting)
	}
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '[':
			l := &List{}
			for dec.More() {
				x, err := decodeJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				l.Items = append(l.Items, x)
			}
			_, err := dec.Token()
			return l, err
		case '{':
			d := NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				x, err := decodeJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				d.Set(k, x)
			}
			_, err := dec.Token()
			return d, err
		}
		return nil, fmt.Errorf("unexpected %v", v)
	case json.Number:
		return FromGo(v), nil
	case string, bool, nil:
		return v, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", t)
}

// ---------------------------------------------------------------- Python semantics

func typeName(v Value) string {
	switch x := v.(type) {
	case nil:
		return "NoneType"
	case Undefined:
		return "Undefined"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case *List:
		if x.Tuple {
			return "tuple"
		}
		return "list"
	case *Dict:
		return "dict"
	case *Namespace:
		return "Namespace"
	case *loopObj:
		return "LoopContext"
	}
	return "function"
}

func truthy(v Value) bool {
	switch x := v.(type) {
	case nil, Undefined:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case *List:
		return len(x.Items) > 0
	case *Dict:
		return x.Len() > 0
	}
	return true
}

// toStr is Python's str() as Jinja2 prints values.
func toStr(v Value) string {
	var p printer
	return p.str(v)
}

// repr is Python's repr().
func repr(v Value) string {
	var p printer
	return p.repr(v)
}

// printer writes values as str() and repr() do. A namespace can hold
// itself (set ns.x = ns), directly or through lists and dicts made after
// it; as in Python, a list or dict met again inside its own repr prints as
// [...] or {...}, so printing always ends.
type printer struct {
	active map[any]bool // the lists and dicts being printed
}

func (p *printer) str(v Value) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case Undefined:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pyFloat(x)
	}
	return p.repr(v)
}

func (p *printer) repr(v Value) string {
	switch x := v.(type) {
	case string:
		return pyStrRepr(x)
	case nil, bool, int64, float64:
		return p.str(v)
	case *List:
		if p.active[x] {
			return "[...]"
		}
		p.enter(x)
		defer delete(p.active, x)
		parts := make([]string, len(x.Items))
		for i, e := range x.Items {
			parts[i] = p.repr(e)
		}
		if x.Tuple {
			if len(parts) == 1 {
				return "(" + parts[0] + ",)"
			}
			return "(" + strings.Join(parts, ", ") + ")"
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *Dict:
		if p.active[x] {
			return "{...}"
		}
		p.enter(x)
		defer delete(p.active, x)
		parts := make([]string, len(x.keys))
		for i, k := range x.keys {
			parts[i] = p.repr(k) + ": " + p.repr(x.vals[i])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case *Namespace:
		return "<Namespace " + p.repr(x.attrs) + ">"
	case Undefined:
		return "Undefined"
	case *macro:
		// Jinja2's Macro.__repr__.
		return "<Macro " + pyStrRepr(x.name) + ">"
	case *loopObj:
		// Jinja2's LoopContext.__repr__.
		return fmt.Sprintf("<LoopContext %d/%d>", x.index+1, len(x.items))
	case builtin:
		// Python adds the object's address, which no two renders share.
		return "<built-in function>"
	}
	return fmt.Sprintf("<%T>", v)
}

func (p *printer) enter(x any) {
	if p.active == nil {
		p.active = map[any]bool{}
	}
	p.active[x] = true
}

// pyFloat is Python's repr of a float: the shortest round-trip digits,
// always with a ".0" or an exponent, exponent form outside 1e-4..1e16.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		mant, ex, _ := strings.Cut(e, "e")
		sign := ex[0]
		digits := strings.TrimLeft(ex[1:], "0")
		if len(digits) < 2 {
			digits = strings.Repeat("0", 2-len(digits)) + digits
		}
		return mant + "e" + string(sign) + digits
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// pyStrRepr is Python's repr of a str.
func pyStrRepr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x80:
			b.WriteRune(r)
		case !pyPrintable(r):
			switch {
			case r <= 0xff:
				fmt.Fprintf(&b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyPrintable approximates Python's str.isprintable for one non-ASCII
// character: letters, marks, numbers, punctuation and symbols print; other
// categories (separators other than space, controls, format, unassigned)
// are escaped.
func pyPrintable(r rune) bool {
	if r == utf8.RuneError {
		return true
	}
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S)
}

// equal is Python's ==.
func equal(a, b Value) bool {
	if na, ok := number(a); ok {
		if nb, ok := number(b); ok {
			return na == nb
		}
		return false
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case Undefined:
		_, ok := b.(Undefined)
		return ok
	case string:
		y, ok := b.(string)
		return ok && x == y
	case *List:
		y, ok := b.(*List)
		if !ok || x.Tuple != y.Tuple || len(x.Items) != len(y.Items) {
			return false
		}
		for i := range x.Items {
			if !equal(x.Items[i], y.Items[i]) {
				return false
			}
		}
		return true
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for i, k := range x.keys {
			v, ok := y.Get(k)
			if !ok || !equal(x.vals[i], v) {
				return false
			}
		}
		return true
	case builtin:
		// Go cannot compare functions; a template's functions and bound
		// methods are made afresh where they are named.
		return false
	}
	return a == b
}

// number returns a numeric value as float64 for comparisons; bools count.
func number(v Value) (float64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// compare orders two values as Python's < does; ok is false where Python
// raises TypeError.
func compare(a, b Value) (int, bool) {
	if na, ok := number(a); ok {
		if nb, ok := number(b); ok {
			ia, aInt := a.(int64)
			ib, bInt := b.(int64)
			if aInt && bInt {
				return cmpInt(ia, ib), true
			}
			switch {
			case na < nb:
				return -1, true
			case na > nb:
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	case *List:
		y, ok := b.(*List)
		if !ok {
			return 0, false
		}
		for i := 0; i < len(x.Items) && i < len(y.Items); i++ {
			if equal(x.Items[i], y.Items[i]) {
				continue
			}
			return compare(x.Items[i], y.Items[i])
		}
		return cmpInt(int64(len(x.Items)), int64(len(y.Items))), true
	}
	return 0, false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ---------------------------------------------------------------- JSON out

// jsonOptions are json.dumps' arguments that HF's tojson passes through.
type jsonOptions struct {
	indent        string // "" and !indented: no newlines
	indented      bool
	itemSep, kSep string
	sortKeys      bool
}

// toJSON is json.dumps(v, ensure_ascii=False, ...), as transformers' tojson
// filter calls it.
func toJSON(b *strings.Builder, v Value, o *jsonOptions, level int, budget *int) error {
	*budget--
	if *budget < 0 {
		return fmt.Errorf("tojson: value too large")
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		switch {
		case math.IsNaN(x):
			b.WriteString("NaN")
		case math.IsInf(x, 1):
			b.WriteString("Infinity")
		case math.IsInf(x, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(pyFloat(x))
		}
	case string:
		jsonString(b, x)
	case *List:
		if len(x.Items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x.Items {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			o.newline(b, level+1)
			if err := toJSON(b, e, o, level+1, budget); err != nil {
				return err
			}
		}
		o.newline(b, level)
		b.WriteByte(']')
	case *Dict:
		if x.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		order := make([]int, x.Len())
		for i := range order {
			order[i] = i
		}
		if o.sortKeys {
			sort.SliceStable(order, func(i, j int) bool {
				c, _ := compare(x.keys[order[i]], x.keys[order[j]])
				return c < 0
			})
		}
		b.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				b.WriteString(o.itemSep)
			}
			o.newline(b, level+1)
			switch k := x.keys[i].(type) {
			case string:
				jsonString(b, k)
			case nil:
				b.WriteString(`"null"`)
			case bool, int64, float64:
				var kb strings.Builder
				if err := toJSON(&kb, k, o, 0, budget); err != nil {
					return err
				}
				jsonString(b, kb.String())
			default:
				return fmt.Errorf("tojson: keys must be str, int, float, bool or None, not %s", typeName(k))
			}
			b.WriteString(o.kSep)
			if err := toJSON(b, x.vals[i], o, level+1, budget); err != nil {
				return err
			}
		}
		o.newline(b, level)
		b.WriteByte('}')
	default:
		return fmt.Errorf("tojson: Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

func (o *jsonOptions) newline(b *strings.Builder, level int) {
	if !o.indented {
		return
	}
	b.WriteByte('\n')
	for i := 0; i < level; i++ {
		b.WriteString(o.indent)
	}
}

func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}
