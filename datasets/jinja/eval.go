package jinja

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Limits bound one render, so that a hostile or broken template fails
// instead of running away.
type Limits struct {
	// MaxSteps counts evaluated nodes, expressions and loop iterations.
	MaxSteps int
	// MaxOutput is the most bytes of text a render may produce, and the
	// largest string or JSON text an expression may build.
	MaxOutput int
	// MaxDepth bounds nested macro calls.
	MaxDepth int
	// MaxItems bounds lists built by range(), repetition and concatenation.
	MaxItems int
}

// DefaultLimits are generous for any real chat template (they render a long
// conversation in a few thousand steps) and stop a runaway within a second.
var DefaultLimits = Limits{MaxSteps: 1_000_000, MaxOutput: 8 << 20, MaxDepth: 100, MaxItems: 1_000_000}

// Span is a byte range [Start, End) of rendered text.
type Span struct{ Start, End int }

// Result is a rendered template.
type Result struct {
	Text string
	// Generation holds the byte ranges that {% generation %} blocks
	// produced: what transformers' assistant mask marks.
	Generation []Span
}

// Options are what a render may use beyond its variables.
type Options struct {
	Limits Limits // zero: DefaultLimits
	// Now stands in for strftime_now's clock; nil means time.Now.
	Now func() time.Time
}

// RuntimeError is a template that failed while rendering, with its line.
type RuntimeError struct {
	Line int
	Msg  string
}

func (e *RuntimeError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// RaisedError is the template's own raise_exception(message): the template
// refuses the conversation (for example roles that do not alternate).
type RaisedError struct {
	Line    int
	Message string
}

func (e *RaisedError) Error() string { return e.Message }

// ErrLimit is wrapped by errors that stop a render at one of its Limits.
var ErrLimit = errors.New("template exceeded a render limit")

type evaluator struct {
	out    strings.Builder
	lim    Limits
	steps  int
	depth  int
	gen    []Span
	now    func() time.Time
	global *scope
}

type scope struct {
	vars   map[string]Value
	parent *scope
}

func newScope(parent *scope) *scope { return &scope{vars: make(map[string]Value, 2), parent: parent} }

func (s *scope) lookup(name string) (Value, bool) {
	for c := s; c != nil; c = c.parent {
		if v, ok := c.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

// loop control signals travel as errors through nested statements.
var (
	errBreak    = errors.New("break outside a loop")
	errContinue = errors.New("continue outside a loop")
)

// Render renders the template with vars (converted with FromGo where they
// are not template values already).
func (t *Template) Render(vars map[string]any, o Options) (Result, error) {
	lim := o.Limits
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	ev := &evaluator{lim: lim, now: o.Now}
	if ev.now == nil {
		ev.now = time.Now
	}
	ev.global = newScope(nil)
	for name, fn := range globals {
		ev.global.vars[name] = fn
	}
	root := newScope(ev.global)
	for k, v := range vars {
		root.vars[k] = FromGo(v)
	}
	err := ev.exec(t.body, root)
	switch {
	case errors.Is(err, errBreak), errors.Is(err, errContinue):
		return Result{}, &RuntimeError{0, err.Error()}
	case err != nil:
		return Result{}, err
	}
	return Result{Text: ev.out.String(), Generation: ev.gen}, nil
}

func (ev *evaluator) step(line int) error {
	ev.steps++
	if ev.steps > ev.lim.MaxSteps {
		return &RuntimeError{line, fmt.Sprintf("%v: more than %d steps", ErrLimit, ev.lim.MaxSteps)}
	}
	return nil
}

func (ev *evaluator) write(s string, line int) error {
	if ev.out.Len()+len(s) > ev.lim.MaxOutput {
		return &RuntimeError{line, fmt.Sprintf("%v: output longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
	}
	ev.out.WriteString(s)
	return nil
}

func (ev *evaluator) exec(nodes []node, sc *scope) error {
	for _, n := range nodes {
		if err := ev.step(n.nodeLine()); err != nil {
			return err
		}
		if err := ev.execOne(n, sc); err != nil {
			return err
		}
	}
	return nil
}

func (ev *evaluator) execOne(n node, sc *scope) error {
	switch n := n.(type) {
	case *textNode:
		return ev.write(n.s, n.line)
	case *outputNode:
		v, err := ev.eval(n.x, sc)
		if err != nil {
			return err
		}
		if _, ok := v.(builtin); ok {
			// jinja2 prints "<built-in method strip of str object at
			// 0x7f…>", an address no two renders share: never the text
			// a template means.
			msg := "prints a function or method instead of calling it (add the call's parentheses)"
			switch x := n.x.(type) {
			case *nameExpr:
				msg = "prints " + x.name + " instead of calling it (write " + x.name + "())"
			case *attrExpr:
				msg = "prints the method ." + x.name + " instead of calling it (write ." + x.name + "())"
			}
			return &RuntimeError{n.line, msg}
		}
		return ev.write(toStr(v), n.line)
	case *ifNode:
		for i, c := range n.conds {
			v, err := ev.eval(c, sc)
			if err != nil {
				return err
			}
			if truthy(v) {
				return ev.exec(n.bodies[i], sc)
			}
		}
		return ev.exec(n.elseBody, sc)
	case *forNode:
		return ev.forLoop(n, sc, nil, 0)
	case *setNode:
		return ev.set(n, sc)
	case *macroNode:
		sc.vars[n.name] = &macro{name: n.name, params: n.params, body: n.body, closure: sc}
		return nil
	case *callBlockNode:
		caller := &macro{name: "caller", params: n.params, body: n.body, closure: sc}
		fn, err := ev.eval(n.call.fn, sc)
		if err != nil {
			return err
		}
		args, kwargs, err := ev.evalArgs(n.call.args, n.call.kwargs, sc)
		if err != nil {
			return err
		}
		m, ok := fn.(*macro)
		if !ok {
			return &RuntimeError{n.line, "{% call %} needs a macro"}
		}
		v, err := ev.callMacro(m, args, kwargs, caller, n.line)
		if err != nil {
			return err
		}
		return ev.write(toStr(v), n.line)
	case *filterBlockNode:
		text, err := ev.capture(n.body, sc)
		if err != nil {
			return err
		}
		v, err := ev.applyFilter(n.filter, text, sc)
		if err != nil {
			return err
		}
		return ev.write(toStr(v), n.line)
	case *loopControlNode:
		if n.brk {
			return errBreak
		}
		return errContinue
	case *generationNode:
		start := ev.out.Len()
		if err := ev.exec(n.body, sc); err != nil {
			return err
		}
		if end := ev.out.Len(); end > start {
			ev.gen = append(ev.gen, Span{start, end})
		}
		return nil
	}
	return fmt.Errorf("unknown node %T", n)
}

// capture renders nodes into a string instead of the output.
func (ev *evaluator) capture(nodes []node, sc *scope) (string, error) {
	return ev.captureFn(func() error { return ev.exec(nodes, sc) })
}

func (ev *evaluator) set(n *setNode, sc *scope) error {
	if n.body != nil {
		text, err := ev.capture(n.body, sc)
		if err != nil {
			return err
		}
		sc.vars[n.names[0]] = text
		return nil
	}
	v, err := ev.eval(n.x, sc)
	if err != nil {
		return err
	}
	if n.ns != "" {
		target, _ := sc.lookup(n.ns)
		ns, ok := target.(*Namespace)
		if !ok {
			return &RuntimeError{n.line, "cannot assign attribute on non-namespace object " + n.ns}
		}
		ns.attrs.Set(n.attr, v)
		return nil
	}
	return ev.assign(sc, n.names, v, n.line)
}

// assign binds v to one name, or unpacks it into several as Python does.
func (ev *evaluator) assign(sc *scope, names []string, v Value, line int) error {
	if len(names) == 1 {
		sc.vars[names[0]] = v
		return nil
	}
	items, err := ev.iterate(v, line)
	if err != nil {
		return err
	}
	if len(items) != len(names) {
		return &RuntimeError{line, fmt.Sprintf("cannot unpack %d values into %d names", len(items), len(names))}
	}
	for i, name := range names {
		sc.vars[name] = items[i]
	}
	return nil
}

// loopObj is the loop variable inside a for loop.
type loopObj struct {
	index  int
	items  []Value
	depth  int
	parent *forNode
	sc     *scope
}

func (ev *evaluator) forLoop(n *forNode, sc *scope, override Value, depth int) error {
	iterV := override
	if iterV == nil {
		v, err := ev.eval(n.iter, sc)
		if err != nil {
			return err
		}
		iterV = v
	}
	items, err := ev.iterate(iterV, n.line)
	if err != nil {
		return err
	}
	if n.cond != nil {
		kept := items[:0:0]
		for _, it := range items {
			isc := newScope(sc)
			if err := ev.bindTargets(n, isc, it); err != nil {
				return err
			}
			c, err := ev.eval(n.cond, isc)
			if err != nil {
				return err
			}
			if truthy(c) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		return ev.exec(n.elseBody, sc)
	}
	lp := &loopObj{items: items, depth: depth, parent: n, sc: sc}
	for i, it := range items {
		if err := ev.step(n.line); err != nil {
			return err
		}
		lp.index = i
		isc := newScope(sc)
		if err := ev.bindTargets(n, isc, it); err != nil {
			return err
		}
		isc.vars["loop"] = lp
		err := ev.exec(n.body, isc)
		if errors.Is(err, errBreak) {
			break
		}
		if errors.Is(err, errContinue) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (ev *evaluator) bindTargets(n *forNode, sc *scope, it Value) error {
	return ev.assign(sc, n.targets, it, n.line)
}

// iterate lists what a for loop over v visits: list items, dict keys,
// string characters; undefined and none... none is an error as in Python.
func (ev *evaluator) iterate(v Value, line int) ([]Value, error) {
	switch x := v.(type) {
	case Undefined:
		return nil, nil
	case *List:
		return x.Items, nil
	case *Dict:
		return append([]Value(nil), x.keys...), nil
	case string:
		rs := []rune(x)
		out := make([]Value, len(rs))
		for i, r := range rs {
			out[i] = string(r)
		}
		return out, nil
	case *Namespace:
		return append([]Value(nil), x.attrs.keys...), nil
	}
	return nil, &RuntimeError{line, fmt.Sprintf("'%s' object is not iterable", typeName(v))}
}

// ---------------------------------------------------------------- expressions

func (ev *evaluator) eval(x expr, sc *scope) (Value, error) {
	if err := ev.step(x.exprLine()); err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case *literal:
		return x.v, nil
	case *nameExpr:
		if v, ok := sc.lookup(x.name); ok {
			return v, nil
		}
		return Undefined{Name: x.name}, nil
	case *attrExpr:
		obj, err := ev.eval(x.obj, sc)
		if err != nil {
			return nil, err
		}
		return ev.getAttr(obj, x.name, x.line)
	case *itemExpr:
		obj, err := ev.eval(x.obj, sc)
		if err != nil {
			return nil, err
		}
		key, err := ev.eval(x.key, sc)
		if err != nil {
			return nil, err
		}
		return ev.getItem(obj, key, x.line)
	case *sliceExpr:
		return ev.slice(x, sc)
	case *callExpr:
		return ev.call(x, sc)
	case *filterExpr:
		arg, err := ev.eval(x.arg, sc)
		if err != nil {
			return nil, err
		}
		return ev.applyFilter(x, arg, sc)
	case *testExpr:
		return ev.applyTest(x, sc)
	case *unaryExpr:
		v, err := ev.eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "not":
			return !truthy(v), nil
		case "-":
			switch n := v.(type) {
			case int64:
				return -n, nil
			case float64:
				return -n, nil
			case bool:
				if n {
					return int64(-1), nil
				}
				return int64(0), nil
			}
			return nil, &RuntimeError{x.line, "bad operand type for unary -: '" + typeName(v) + "'"}
		default:
			if _, ok := number(v); ok {
				return v, nil
			}
			return nil, &RuntimeError{x.line, "bad operand type for unary +: '" + typeName(v) + "'"}
		}
	case *binExpr:
		return ev.binary(x, sc)
	case *compareExpr:
		left, err := ev.eval(x.first, sc)
		if err != nil {
			return nil, err
		}
		for i, op := range x.ops {
			right, err := ev.eval(x.rest[i], sc)
			if err != nil {
				return nil, err
			}
			ok, err := ev.compareOp(op, left, right, x.line)
			if err != nil {
				return nil, err
			}
			if !ok {
				return false, nil
			}
			left = right
		}
		return true, nil
	case *condExpr:
		c, err := ev.eval(x.cond, sc)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return ev.eval(x.then, sc)
		}
		if x.els == nil {
			return Undefined{}, nil
		}
		return ev.eval(x.els, sc)
	case *listExpr:
		items := make([]Value, len(x.items))
		for i, e := range x.items {
			v, err := ev.eval(e, sc)
			if err != nil {
				return nil, err
			}
			items[i] = v
		}
		return &List{Items: items, Tuple: x.tuple}, nil
	case *dictExpr:
		d := NewDict()
		for i := range x.keys {
			k, err := ev.eval(x.keys[i], sc)
			if err != nil {
				return nil, err
			}
			v, err := ev.eval(x.vals[i], sc)
			if err != nil {
				return nil, err
			}
			if err := hashable(k, x.line); err != nil {
				return nil, err
			}
			d.Set(k, v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown expression %T", x)
}

func hashable(k Value, line int) error {
	switch k.(type) {
	case *List:
		if !k.(*List).Tuple {
			return &RuntimeError{line, "unhashable type: 'list'"}
		}
	case *Dict:
		return &RuntimeError{line, "unhashable type: 'dict'"}
	}
	return nil
}

func (ev *evaluator) compareOp(op string, a, b Value, line int) (bool, error) {
	switch op {
	case "==":
		return equal(a, b), nil
	case "!=":
		return !equal(a, b), nil
	case "in", "not in":
		in, err := contains(b, a, line)
		if err != nil {
			return false, err
		}
		return in == (op == "in"), nil
	}
	c, ok := compare(a, b)
	if !ok {
		return false, &RuntimeError{line, fmt.Sprintf("'%s' not supported between instances of '%s' and '%s'", op, typeName(a), typeName(b))}
	}
	switch op {
	case "<":
		return c < 0, nil
	case ">":
		return c > 0, nil
	case "<=":
		return c <= 0, nil
	}
	return c >= 0, nil
}

// contains is Python's "needle in haystack".
func contains(hay, needle Value, line int) (bool, error) {
	switch h := hay.(type) {
	case string:
		s, ok := needle.(string)
		if !ok {
			return false, &RuntimeError{line, "'in <string>' requires string as left operand, not " + typeName(needle)}
		}
		return strings.Contains(h, s), nil
	case *List:
		for _, it := range h.Items {
			if equal(it, needle) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		_, ok := h.Get(needle)
		return ok, nil
	case *Namespace:
		_, ok := h.attrs.Get(needle)
		return ok, nil
	case Undefined:
		return false, nil
	}
	return false, &RuntimeError{line, fmt.Sprintf("argument of type '%s' is not iterable", typeName(hay))}
}

func (ev *evaluator) binary(x *binExpr, sc *scope) (Value, error) {
	a, err := ev.eval(x.l, sc)
	if err != nil {
		return nil, err
	}
	switch x.op {
	case "and":
		if !truthy(a) {
			return a, nil
		}
		return ev.eval(x.r, sc)
	case "or":
		if truthy(a) {
			return a, nil
		}
		return ev.eval(x.r, sc)
	}
	b, err := ev.eval(x.r, sc)
	if err != nil {
		return nil, err
	}
	if x.op == "~" {
		s := toStr(a) + toStr(b)
		if len(s) > ev.lim.MaxOutput {
			return nil, &RuntimeError{x.line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
		}
		return s, nil
	}
	return ev.arith(x.op, a, b, x.line)
}

func (ev *evaluator) arith(op string, a, b Value, line int) (Value, error) {
	bad := func() (Value, error) {
		return nil, &RuntimeError{line, fmt.Sprintf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(a), typeName(b))}
	}
	// Sequences.
	switch x := a.(type) {
	case string:
		switch op {
		case "+":
			y, ok := b.(string)
			if !ok {
				return nil, &RuntimeError{line, fmt.Sprintf("can only concatenate str (not \"%s\") to str", typeName(b))}
			}
			if len(x)+len(y) > ev.lim.MaxOutput {
				return nil, &RuntimeError{line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
			}
			return x + y, nil
		case "*":
			n, ok := asInt(b)
			if !ok {
				return bad()
			}
			if n <= 0 {
				return "", nil
			}
			if int64(len(x))*n > int64(ev.lim.MaxOutput) {
				return nil, &RuntimeError{line, fmt.Sprintf("%v: string longer than %d bytes", ErrLimit, ev.lim.MaxOutput)}
			}
			return strings.Repeat(x, int(n)), nil
		case "%":
			args := []Value{b}
			if l, ok := b.(*List); ok && l.Tuple {
				args = l.Items
			}
			return printf(ev, x, args, line)
		}
		return bad()
	case *List:
		switch op {
		case "+":
			y, ok := b.(*List)
			if !ok || y.Tuple != x.Tuple {
				return bad()
			}
			if len(x.Items)+len(y.Items) > ev.lim.MaxItems {
				return nil, &RuntimeError{line, fmt.Sprintf("%v: list longer than %d items", ErrLimit, ev.lim.MaxItems)}
			}
			items := append(append([]Value(nil), x.Items...), y.Items...)
			return &List{Items: items, Tuple: x.Tuple}, nil
		case "*":
			n, ok := asInt(b)
			if !ok {
				return bad()
			}
			if n <= 0 {
				return &List{Tuple: x.Tuple}, nil
			}
			if int64(len(x.Items))*n > int64(ev.lim.MaxItems) {
				return nil, &RuntimeError{line, fmt.Sprintf("%v: list longer than %d items", ErrLimit, ev.lim.MaxItems)}
			}
			var items []Value
			for i := int64(0); i < n; i++ {
				items = append(items, x.Items...)
			}
			return &List{Items: items, Tuple: x.Tuple}, nil
		}
		return bad()
	}
	if _, ok := b.(string); ok && op == "*" {
		return ev.arith(op, b, a, line)
	}
	if _, ok := b.(*List); ok && op == "*" {
		return ev.arith(op, b, a, line)
	}
	// Numbers.
	ia, aInt := asInt(a)
	ib, bInt := asInt(b)
	fa, aNum := number(a)
	fb, bNum := number(b)
	if !aNum || !bNum {
		return bad()
	}
	_, aFloat := a.(float64)
	_, bFloat := b.(float64)
	useInt := aInt && bInt && !aFloat && !bFloat
	switch op {
	case "+":
		if useInt {
			return ia + ib, nil
		}
		return fa + fb, nil
	case "-":
		if useInt {
			return ia - ib, nil
		}
		return fa - fb, nil
	case "*":
		if useInt {
			return ia * ib, nil
		}
		return fa * fb, nil
	case "/":
		if fb == 0 {
			return nil, &RuntimeError{line, "division by zero"}
		}
		return fa / fb, nil
	case "//":
		if fb == 0 {
			return nil, &RuntimeError{line, "integer division or modulo by zero"}
		}
		if useInt {
			q := ia / ib
			if (ia%ib != 0) && ((ia < 0) != (ib < 0)) {
				q--
			}
			return q, nil
		}
		return math.Floor(fa / fb), nil
	case "%":
		if fb == 0 {
			return nil, &RuntimeError{line, "integer division or modulo by zero"}
		}
		if useInt {
			m := ia % ib
			if m != 0 && ((m < 0) != (ib < 0)) {
				m += ib
			}
			return m, nil
		}
		m := math.Mod(fa, fb)
		if m != 0 && ((m < 0) != (fb < 0)) {
			m += fb
		}
		return m, nil
	case "**":
		if useInt && ib >= 0 {
			r := int64(1)
			for i := int64(0); i < ib; i++ {
				r *= ia
				if i > 64 {
					return nil, &RuntimeError{line, fmt.Sprintf("%v: power too large", ErrLimit)}
				}
			}
			return r, nil
		}
		return math.Pow(fa, fb), nil
	}
	return bad()
}

// asInt returns ints and bools as int64.
func asInt(v Value) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (ev *evaluator) slice(x *sliceExpr, sc *scope) (Value, error) {
	obj, err := ev.eval(x.obj, sc)
	if err != nil {
		return nil, err
	}
	bound := func(e expr) (*int64, error) {
		if e == nil {
			return nil, nil
		}
		v, err := ev.eval(e, sc)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, nil
		}
		n, ok := asInt(v)
		if !ok {
			return nil, &RuntimeError{x.line, "slice indices must be integers or None"}
		}
		return &n, nil
	}
	start, err := bound(x.start)
	if err != nil {
		return nil, err
	}
	stop, err := bound(x.stop)
	if err != nil {
		return nil, err
	}
	step, err := bound(x.step)
	if err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case string:
		rs := []rune(o)
		idx, err := sliceIndices(len(rs), start, stop, step, x.line)
		if err != nil {
			return nil, err
		}
		out := make([]rune, len(idx))
		for i, j := range idx {
			out[i] = rs[j]
		}
		return string(out), nil
	case *List:
		idx, err := sliceIndices(len(o.Items), start, stop, step, x.line)
		if err != nil {
			return nil, err
		}
		out := make([]Value, len(idx))
		for i, j := range idx {
			out[i] = o.Items[j]
		}
		return &List{Items: out, Tuple: o.Tuple}, nil
	case Undefined:
		return Undefined{}, nil
	}
	return nil, &RuntimeError{x.line, fmt.Sprintf("'%s' object is not subscriptable", typeName(obj))}
}

// sliceIndices is Python's slice.indices followed by range().
func sliceIndices(n int, start, stop, step *int64, line int) ([]int, error) {
	st := int64(1)
	if step != nil {
		st = *step
	}
	if st == 0 {
		return nil, &RuntimeError{line, "slice step cannot be zero"}
	}
	ln := int64(n)
	clamp := func(p *int64, def int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += ln
			if v < 0 {
				if st < 0 {
					return -1
				}
				return 0
			}
		} else if v >= ln {
			if st < 0 {
				return ln - 1
			}
			return ln
		}
		return v
	}
	var lo, hi int64
	if st > 0 {
		lo, hi = clamp(start, 0), clamp(stop, ln)
	} else {
		lo, hi = clamp(start, ln-1), clamp(stop, -1)
		if stop != nil && *stop < 0 && *stop+ln < 0 {
			hi = -1
		}
	}
	var out []int
	if st > 0 {
		for i := lo; i < hi; i += st {
			out = append(out, int(i))
		}
	} else {
		for i := lo; i > hi; i += st {
			out = append(out, int(i))
		}
	}
	return out, nil
}

// seqItem is seq[key] for a sequence of n items: for an int key item(i)
// (negative counts from the end; Undefined outside), for a string key the
// sequence's method of that name, else Undefined.
func seqItem(seq, key Value, n int, item func(int) Value) (Value, error) {
	i, ok := asInt(key)
	if !ok {
		if s, ok := key.(string); ok {
			if m, ok := method(seq, s); ok {
				return m, nil
			}
		}
		return noAttr(seq, key), nil
	}
	asked := i
	if i < 0 {
		i += int64(n)
	}
	if i < 0 || i >= int64(n) {
		return Undefined{Hint: fmt.Sprintf("%s object has no element %d", typeName(seq), asked)}, nil
	}
	return item(int(i)), nil
}

// noAttr is the undefined value of obj's missing attribute or item key,
// named as jinja2 names it once it is used.
func noAttr(obj, key Value) Undefined {
	name := toStr(key)
	if s, ok := key.(string); ok {
		if strings.HasPrefix(s, "_") { // jinja2's sandbox refuses these by name
			return Undefined{Name: s, Hint: fmt.Sprintf("access to attribute '%s' of '%s' object is unsafe", s, typeName(obj))}
		}
		name = "'" + name + "'"
	}
	return Undefined{Name: toStr(key), Hint: fmt.Sprintf("'%s object' has no attribute %s", typeName(obj), name)}
}

func (ev *evaluator) getItem(obj, key Value, line int) (Value, error) {
	switch o := obj.(type) {
	case *Dict:
		if v, ok := o.Get(key); ok {
			return v, nil
		}
		if s, ok := key.(string); ok {
			if m, ok := method(o, s); ok {
				return m, nil
			}
		}
		return noAttr(o, key), nil
	case *List:
		return seqItem(o, key, len(o.Items), func(i int) Value { return o.Items[i] })
	case string:
		rs := []rune(o)
		return seqItem(o, key, len(rs), func(i int) Value { return string(rs[i]) })
	case *Namespace:
		if v, ok := o.attrs.Get(key); ok {
			return v, nil
		}
		return Undefined{Name: toStr(key)}, nil
	case *loopObj:
		if s, ok := key.(string); ok {
			return ev.getAttr(o, s, line)
		}
	case Undefined:
		return nil, &RuntimeError{line, undefinedMsg(o)}
	case nil:
		return Undefined{Name: toStr(key)}, nil
	}
	return noAttr(obj, key), nil
}

func undefinedName(u Undefined) string {
	if u.Name == "" {
		return "value"
	}
	return u.Name
}

// undefinedMsg is what using u says: jinja2's words for a missing element
// or attribute, else "'NAME' is undefined".
func undefinedMsg(u Undefined) string {
	if u.Hint != "" {
		return u.Hint
	}
	return fmt.Sprintf("'%s' is undefined", undefinedName(u))
}

// getAttr is Jinja2's attribute lookup: the attribute (a method) first,
// then the item of that name.
func (ev *evaluator) getAttr(obj Value, name string, line int) (Value, error) {
	switch o := obj.(type) {
	case *Dict:
		if m, ok := method(o, name); ok {
			return m, nil
		}
		if v, ok := o.Get(name); ok {
			return v, nil
		}
		return noAttr(o, name), nil
	case *Namespace:
		if v, ok := o.attrs.Get(name); ok {
			return v, nil
		}
		return Undefined{Name: name}, nil
	case *loopObj:
		n := len(o.items)
		switch name {
		case "index":
			return int64(o.index + 1), nil
		case "index0":
			return int64(o.index), nil
		case "revindex":
			return int64(n - o.index), nil
		case "revindex0":
			return int64(n - o.index - 1), nil
		case "first":
			return o.index == 0, nil
		case "last":
			return o.index == n-1, nil
		case "length":
			return int64(n), nil
		case "depth":
			return int64(o.depth + 1), nil
		case "depth0":
			return int64(o.depth), nil
		case "previtem":
			if o.index > 0 {
				return o.items[o.index-1], nil
			}
			return Undefined{Name: "previtem"}, nil
		case "nextitem":
			if o.index+1 < n {
				return o.items[o.index+1], nil
			}
			return Undefined{Name: "nextitem"}, nil
		case "cycle":
			return builtin(func(ev *evaluator, args []Value, _ *Dict, line int) (Value, error) {
				if len(args) == 0 {
					return nil, &RuntimeError{line, "no items for cycling given"}
				}
				return args[o.index%len(args)], nil
			}), nil
		}
		return Undefined{Name: name}, nil
	case Undefined:
		return nil, &RuntimeError{line, undefinedMsg(o)}
	case nil:
		// jinja2 turns the AttributeError into an undefined value.
		return Undefined{Name: name}, nil
	}
	if m, ok := method(obj, name); ok {
		return m, nil
	}
	return noAttr(obj, name), nil
}

// ---------------------------------------------------------------- calls

// builtin is a Go function callable from templates.
type builtin func(ev *evaluator, args []Value, kwargs *Dict, line int) (Value, error)

type macro struct {
	name    string
	params  []param
	body    []node
	closure *scope
}

func (ev *evaluator) evalArgs(argx []expr, kwx []kwarg, sc *scope) ([]Value, *Dict, error) {
	args := make([]Value, len(argx))
	for i, a := range argx {
		v, err := ev.eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		args[i] = v
	}
	kwargs := NewDict()
	for _, k := range kwx {
		v, err := ev.eval(k.x, sc)
		if err != nil {
			return nil, nil, err
		}
		kwargs.Set(k.name, v)
	}
	return args, kwargs, nil
}

func (ev *evaluator) call(x *callExpr, sc *scope) (Value, error) {
	fn, err := ev.eval(x.fn, sc)
	if err != nil {
		return nil, err
	}
	args, kwargs, err := ev.evalArgs(x.args, x.kwargs, sc)
	if err != nil {
		return nil, err
	}
	switch f := fn.(type) {
	case builtin:
		return f(ev, args, kwargs, x.line)
	case *macro:
		caller, _ := sc.lookup("caller")
		cm, _ := caller.(*macro)
		return ev.callMacro(f, args, kwargs, cm, x.line)
	case *loopObj:
		// loop(items) re-enters a recursive loop.
		if !f.parent.recursive {
			return nil, &RuntimeError{x.line, "the loop is not recursive"}
		}
		if len(args) != 1 {
			return nil, &RuntimeError{x.line, "loop() takes one argument"}
		}
		text, err := ev.captureFn(func() error { return ev.forLoop(f.parent, f.sc, args[0], f.depth+1) })
		return text, err
	case Undefined:
		return nil, &RuntimeError{x.line, undefinedMsg(f)}
	}
	return nil, &RuntimeError{x.line, fmt.Sprintf("'%s' object is not callable", typeName(fn))}
}

// captureFn runs fn with the output going to a string it returns. What fn
// writes still counts against the output limit; {% generation %} spans it
// records are dropped, their offsets being in the captured text.
func (ev *evaluator) captureFn(fn func() error) (string, error) {
	saved, savedGen, lim := ev.out, ev.gen, ev.lim.MaxOutput
	ev.out = strings.Builder{}
	ev.lim.MaxOutput = lim - saved.Len()
	err := fn()
	text := ev.out.String()
	ev.out, ev.gen, ev.lim.MaxOutput = saved, savedGen, lim
	return text, err
}

func (ev *evaluator) callMacro(m *macro, args []Value, kwargs *Dict, caller *macro, line int) (Value, error) {
	ev.depth++
	defer func() { ev.depth-- }()
	if ev.depth > ev.lim.MaxDepth {
		return nil, &RuntimeError{line, fmt.Sprintf("%v: macro calls nest more than %d deep", ErrLimit, ev.lim.MaxDepth)}
	}
	sc := newScope(m.closure)
	if len(args) > len(m.params) {
		return nil, &RuntimeError{line, fmt.Sprintf("macro '%s' takes not more than %d argument(s)", m.name, len(m.params))}
	}
	for i, p := range m.params {
		switch {
		case i < len(args):
			sc.vars[p.name] = args[i]
		default:
			if v, ok := kwargs.Get(p.name); ok {
				sc.vars[p.name] = v
			} else if p.def != nil {
				v, err := ev.eval(p.def, sc)
				if err != nil {
					return nil, err
				}
				sc.vars[p.name] = v
			} else {
				sc.vars[p.name] = Undefined{Name: p.name}
			}
		}
	}
	if caller != nil {
		sc.vars["caller"] = caller
	}
	text, err := ev.capture(m.body, sc)
	if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
		return nil, &RuntimeError{line, err.Error()}
	}
	return text, err
}
