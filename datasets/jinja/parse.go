package jinja

import (
	"fmt"
	"strings"
)

// ---------------------------------------------------------------- statements

type node interface{ nodeLine() int }

type textNode struct {
	s    string
	line int
}

type outputNode struct {
	x    expr
	line int
}

type ifNode struct {
	conds    []expr
	bodies   [][]node
	elseBody []node
	line     int
}

type forNode struct {
	targets   []string
	iter      expr
	cond      expr // the loop's "if" filter, or nil
	body      []node
	elseBody  []node
	recursive bool
	line      int
}

// setNode assigns to a name, to several names (tuple unpacking) or to an
// attribute of a namespace (ns.attr).
type setNode struct {
	names []string
	ns    string // non-empty for "set ns.attr = ..."
	attr  string
	x     expr
	body  []node // block set: {% set x %}...{% endset %}
	line  int
}

type param struct {
	name string
	def  expr // nil when the parameter has no default
}

type macroNode struct {
	name   string
	params []param
	body   []node
	line   int
}

type callBlockNode struct {
	call   *callExpr
	params []param
	body   []node
	line   int
}

type filterBlockNode struct {
	filter *filterExpr // its arg is nil: the body is the argument
	body   []node
	line   int
}

type loopControlNode struct {
	brk  bool
	line int
}

// generationNode is transformers' {% generation %} block: the text it
// renders is what the assistant produces.
type generationNode struct {
	body []node
	line int
}

func (n *textNode) nodeLine() int        { return n.line }
func (n *outputNode) nodeLine() int      { return n.line }
func (n *ifNode) nodeLine() int          { return n.line }
func (n *forNode) nodeLine() int         { return n.line }
func (n *setNode) nodeLine() int         { return n.line }
func (n *macroNode) nodeLine() int       { return n.line }
func (n *callBlockNode) nodeLine() int   { return n.line }
func (n *filterBlockNode) nodeLine() int { return n.line }
func (n *loopControlNode) nodeLine() int { return n.line }
func (n *generationNode) nodeLine() int  { return n.line }

// ---------------------------------------------------------------- expressions

type expr interface{ exprLine() int }

type pos struct{ line int }

func (p pos) exprLine() int { return p.line }

type literal struct {
	pos
	v Value
}

type nameExpr struct {
	pos
	name string
}

type attrExpr struct {
	pos
	obj  expr
	name string
}

type itemExpr struct {
	pos
	obj, key expr
}

type sliceExpr struct {
	pos
	obj               expr
	start, stop, step expr // nil when left out
}

type kwarg struct {
	name string
	x    expr
}

type callExpr struct {
	pos
	fn     expr
	args   []expr
	kwargs []kwarg
}

type filterExpr struct {
	pos
	arg    expr
	name   string
	args   []expr
	kwargs []kwarg
}

type testExpr struct {
	pos
	arg    expr
	name   string
	args   []expr
	negate bool
}

type binExpr struct {
	pos
	op   string
	l, r expr
}

type unaryExpr struct {
	pos
	op string
	x  expr
}

type compareExpr struct {
	pos
	first expr
	ops   []string
	rest  []expr
}

type condExpr struct {
	pos
	cond, then, els expr // els nil: undefined
}

type listExpr struct {
	pos
	items []expr
	tuple bool
}

type dictExpr struct {
	pos
	keys, vals []expr
}

// ---------------------------------------------------------------- parser

// maxNesting bounds how deeply expressions and blocks nest, so a hostile
// template cannot exhaust the parser's stack.
const maxNesting = 200

type parser struct {
	toks  []token
	i     int
	line  int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tkEOF {
		p.i++
	}
	return t
}

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tkOp && t.s == s
}

func (p *parser) isName(s string) bool {
	t := p.peek()
	return t.kind == tkName && t.s == s
}

func (p *parser) errf(format string, a ...any) error {
	return &SyntaxError{p.line, fmt.Sprintf(format, a...)}
}

func (p *parser) expectOp(s string) error {
	if !p.isOp(s) {
		return p.errf("expected %q, found %s", s, describe(p.peek()))
	}
	p.next()
	return nil
}

func (p *parser) expectName() (string, error) {
	t := p.next()
	if t.kind != tkName {
		return "", p.errf("expected a name, found %s", describe(t))
	}
	return t.s, nil
}

func (p *parser) expectEnd() error {
	if p.peek().kind != tkEOF {
		return p.errf("unexpected %s", describe(p.peek()))
	}
	return nil
}

func describe(t token) string {
	switch t.kind {
	case tkEOF:
		return "end of tag"
	case tkName:
		return "name " + t.s
	case tkString:
		return "string"
	case tkInt, tkFloat:
		return "number"
	}
	return fmt.Sprintf("%q", t.s)
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxNesting {
		return p.errf("expression nests more than %d deep", maxNesting)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// expression parses a full expression: a conditional, or a tuple when
// commas follow and allowTuple is set.
func (p *parser) expression(allowTuple bool) (expr, error) {
	x, err := p.conditional()
	if err != nil || !allowTuple || !p.isOp(",") {
		return x, err
	}
	items := []expr{x}
	for p.isOp(",") {
		p.next()
		if p.peek().kind == tkEOF || p.isOp(")") {
			break
		}
		y, err := p.conditional()
		if err != nil {
			return nil, err
		}
		items = append(items, y)
	}
	return &listExpr{pos{p.line}, items, true}, nil
}

func (p *parser) conditional() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	x, err := p.or()
	if err != nil {
		return nil, err
	}
	for p.isName("if") {
		p.next()
		cond, err := p.or()
		if err != nil {
			return nil, err
		}
		var els expr
		if p.isName("else") {
			p.next()
			if els, err = p.conditional(); err != nil {
				return nil, err
			}
		}
		x = &condExpr{pos{p.line}, cond, x, els}
	}
	return x, nil
}

func (p *parser) or() (expr, error) {
	x, err := p.and()
	for err == nil && p.isName("or") {
		p.next()
		var y expr
		if y, err = p.and(); err == nil {
			x = &binExpr{pos{p.line}, "or", x, y}
		}
	}
	return x, err
}

func (p *parser) and() (expr, error) {
	x, err := p.not()
	for err == nil && p.isName("and") {
		p.next()
		var y expr
		if y, err = p.not(); err == nil {
			x = &binExpr{pos{p.line}, "and", x, y}
		}
	}
	return x, err
}

func (p *parser) not() (expr, error) {
	if p.isName("not") {
		p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{pos{p.line}, "not", x}, nil
	}
	return p.compare()
}

func (p *parser) compare() (expr, error) {
	x, err := p.math1()
	if err != nil {
		return nil, err
	}
	c := &compareExpr{pos: pos{p.line}, first: x}
	for {
		t := p.peek()
		var op string
		switch {
		case t.kind == tkOp && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">="):
			op = t.s
			p.next()
		case t.kind == tkName && t.s == "in":
			op = "in"
			p.next()
		case t.kind == tkName && t.s == "not" && p.toks[p.i+1].kind == tkName && p.toks[p.i+1].s == "in":
			op = "not in"
			p.next()
			p.next()
		}
		if op == "" {
			break
		}
		y, err := p.math1()
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, y)
	}
	if len(c.ops) == 0 {
		return x, nil
	}
	return c, nil
}

func (p *parser) math1() (expr, error) {
	x, err := p.concat()
	for err == nil && (p.isOp("+") || p.isOp("-")) {
		op := p.next().s
		var y expr
		if y, err = p.concat(); err == nil {
			x = &binExpr{pos{p.line}, op, x, y}
		}
	}
	return x, err
}

func (p *parser) concat() (expr, error) {
	x, err := p.math2()
	for err == nil && p.isOp("~") {
		p.next()
		var y expr
		if y, err = p.math2(); err == nil {
			x = &binExpr{pos{p.line}, "~", x, y}
		}
	}
	return x, err
}

func (p *parser) math2() (expr, error) {
	x, err := p.pow()
	for err == nil && (p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%")) {
		op := p.next().s
		var y expr
		if y, err = p.pow(); err == nil {
			x = &binExpr{pos{p.line}, op, x, y}
		}
	}
	return x, err
}

func (p *parser) pow() (expr, error) {
	x, err := p.unary(true)
	for err == nil && p.isOp("**") {
		p.next()
		var y expr
		if y, err = p.unary(true); err == nil {
			x = &binExpr{pos{p.line}, "**", x, y}
		}
	}
	return x, err
}

func (p *parser) unary(withFilter bool) (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	var x expr
	var err error
	if p.isOp("-") || p.isOp("+") {
		op := p.next().s
		if x, err = p.unary(false); err != nil {
			return nil, err
		}
		x = &unaryExpr{pos{p.line}, op, x}
	} else {
		if x, err = p.primary(); err != nil {
			return nil, err
		}
		if x, err = p.postfix(x); err != nil {
			return nil, err
		}
	}
	if withFilter {
		return p.filtersAndTests(x)
	}
	return x, nil
}

func (p *parser) primary() (expr, error) {
	t := p.next()
	at := pos{p.line}
	switch t.kind {
	case tkName:
		switch t.s {
		case "true", "True":
			return &literal{at, true}, nil
		case "false", "False":
			return &literal{at, false}, nil
		case "none", "None":
			return &literal{at, nil}, nil
		}
		return &nameExpr{at, t.s}, nil
	case tkString:
		s := t.s
		for p.peek().kind == tkString {
			s += p.next().s
		}
		return &literal{at, s}, nil
	case tkInt:
		return &literal{at, t.i}, nil
	case tkFloat:
		return &literal{at, t.f}, nil
	case tkOp:
		switch t.s {
		case "(":
			if p.isOp(")") {
				p.next()
				return &listExpr{at, nil, true}, nil
			}
			x, err := p.expression(true)
			if err != nil {
				return nil, err
			}
			return x, p.expectOp(")")
		case "[":
			var items []expr
			for !p.isOp("]") {
				x, err := p.expression(false)
				if err != nil {
					return nil, err
				}
				items = append(items, x)
				if !p.isOp(",") {
					break
				}
				p.next()
			}
			return &listExpr{at, items, false}, p.expectOp("]")
		case "{":
			d := &dictExpr{pos: at}
			for !p.isOp("}") {
				k, err := p.expression(false)
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.expression(false)
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
				if !p.isOp(",") {
					break
				}
				p.next()
			}
			return d, p.expectOp("}")
		}
	}
	return nil, p.errf("unexpected %s", describe(t))
}

func (p *parser) postfix(x expr) (expr, error) {
	for {
		switch {
		case p.isOp("."):
			p.next()
			t := p.next()
			switch t.kind {
			case tkName:
				x = &attrExpr{pos{p.line}, x, t.s}
			case tkInt:
				x = &itemExpr{pos{p.line}, x, &literal{pos{p.line}, t.i}}
			default:
				return nil, p.errf("expected an attribute name after '.', found %s", describe(t))
			}
		case p.isOp("["):
			p.next()
			var err error
			if x, err = p.subscript(x); err != nil {
				return nil, err
			}
		case p.isOp("("):
			p.next()
			args, kwargs, err := p.callArgs()
			if err != nil {
				return nil, err
			}
			x = &callExpr{pos{p.line}, x, args, kwargs}
		default:
			return x, nil
		}
	}
}

func (p *parser) subscript(obj expr) (expr, error) {
	var parts [3]expr
	n := 0
	sliced := false
	for {
		if p.isOp(":") {
			sliced = true
			p.next()
			n++
			if n > 2 {
				return nil, p.errf("too many ':' in a slice")
			}
			continue
		}
		if p.isOp("]") {
			p.next()
			break
		}
		x, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		parts[n] = x
		if !p.isOp(":") && !p.isOp("]") {
			return nil, p.errf("expected ':' or ']', found %s", describe(p.peek()))
		}
	}
	if !sliced {
		if parts[0] == nil {
			return nil, p.errf("empty subscript")
		}
		return &itemExpr{pos{p.line}, obj, parts[0]}, nil
	}
	return &sliceExpr{pos{p.line}, obj, parts[0], parts[1], parts[2]}, nil
}

func (p *parser) callArgs() ([]expr, []kwarg, error) {
	var args []expr
	var kwargs []kwarg
	for !p.isOp(")") {
		if p.peek().kind == tkName && p.toks[p.i+1].kind == tkOp && p.toks[p.i+1].s == "=" {
			name := p.next().s
			p.next()
			x, err := p.expression(false)
			if err != nil {
				return nil, nil, err
			}
			kwargs = append(kwargs, kwarg{name, x})
		} else {
			if len(kwargs) > 0 {
				return nil, nil, p.errf("positional argument after a keyword argument")
			}
			x, err := p.expression(false)
			if err != nil {
				return nil, nil, err
			}
			args = append(args, x)
		}
		if !p.isOp(",") {
			break
		}
		p.next()
	}
	return args, kwargs, p.expectOp(")")
}

func (p *parser) filtersAndTests(x expr) (expr, error) {
	for {
		switch {
		case p.isOp("|"):
			p.next()
			f, err := p.filterCall(x)
			if err != nil {
				return nil, err
			}
			x = f
		case p.isName("is"):
			p.next()
			negate := false
			if p.isName("not") {
				p.next()
				negate = true
			}
			name, err := p.dottedName()
			if err != nil {
				return nil, err
			}
			t := &testExpr{pos: pos{p.line}, arg: x, name: name, negate: negate}
			if p.isOp("(") {
				p.next()
				args, kwargs, err := p.callArgs()
				if err != nil {
					return nil, err
				}
				if len(kwargs) > 0 {
					return nil, p.errf("test %s takes no keyword arguments", name)
				}
				t.args = args
			} else if tk := p.peek(); tk.kind == tkString || tk.kind == tkInt || tk.kind == tkFloat ||
				tk.kind == tkName && !isKeyword(tk.s) || tk.kind == tkOp && (tk.s == "[" || tk.s == "{" || tk.s == "-") {
				// Jinja2 allows one argument without parentheses: "x is divisibleby 3".
				arg, err := p.unary(false)
				if err != nil {
					return nil, err
				}
				t.args = []expr{arg}
			}
			x = t
		default:
			return x, nil
		}
	}
}

func isKeyword(s string) bool {
	switch s {
	case "and", "or", "not", "in", "is", "if", "else", "for", "recursive":
		return true
	}
	return false
}

func (p *parser) dottedName() (string, error) {
	name, err := p.expectName()
	for err == nil && p.isOp(".") {
		p.next()
		var more string
		more, err = p.expectName()
		name += "." + more
	}
	return name, err
}

func (p *parser) filterCall(arg expr) (*filterExpr, error) {
	name, err := p.dottedName()
	if err != nil {
		return nil, err
	}
	f := &filterExpr{pos: pos{p.line}, arg: arg, name: name}
	if p.isOp("(") {
		p.next()
		if f.args, f.kwargs, err = p.callArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// ---------------------------------------------------------------- block structure

// Template is a parsed chat template, safe for concurrent renders.
type Template struct {
	body []node
}

// Parse reads a template. Errors name the line.
func Parse(src string) (*Template, error) {
	if !validUTF8(src) {
		return nil, &SyntaxError{1, "template is not valid UTF-8"}
	}
	// As Jinja2 reads a template: every newline sequence becomes "\n", and
	// one newline at the very end is dropped (keep_trailing_newline off).
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")
	segs, err := lex(src)
	if err != nil {
		return nil, err
	}
	b := &builder{segs: segs}
	body, end, err := b.nodes(nil)
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, &SyntaxError{b.line, "unexpected {% " + end + " %}"}
	}
	return &Template{body: body}, nil
}

type builder struct {
	segs  []segment
	i     int
	line  int
	depth int
	// stopParser holds the tokens of the tag that ended the last nodes call,
	// positioned after its first word.
	stopParser *parser
}

// closers are the tags that end or divide a block, with the tag that
// opens it.
var closers = map[string]string{
	"endif": "if", "elif": "if", "else": "if or for", "endfor": "for", "endset": "set",
	"endmacro": "macro", "endcall": "call", "endfilter": "filter", "endgeneration": "generation",
}

// nodes reads nodes until a block tag whose first word is in stops, and
// returns that word with the tag's tokens positioned after it.
func (b *builder) nodes(stops []string) ([]node, string, error) {
	b.depth++
	defer func() { b.depth-- }()
	if b.depth > maxNesting {
		return nil, "", &SyntaxError{b.line, fmt.Sprintf("blocks nest more than %d deep", maxNesting)}
	}
	var out []node
	for b.i < len(b.segs) {
		s := b.segs[b.i]
		b.i++
		b.line = s.line
		switch s.kind {
		case segText:
			out = append(out, &textNode{s.text, s.line})
		case segVar:
			p, err := b.parserFor(s)
			if err != nil {
				return nil, "", err
			}
			x, err := p.expression(true)
			if err != nil {
				return nil, "", err
			}
			if err := p.expectEnd(); err != nil {
				return nil, "", err
			}
			out = append(out, &outputNode{x, s.line})
		case segBlock:
			p, err := b.parserFor(s)
			if err != nil {
				return nil, "", err
			}
			word, err := p.expectName()
			if err != nil {
				return nil, "", err
			}
			for _, st := range stops {
				if word == st {
					b.stopParser = p
					return out, word, nil
				}
			}
			if opener, ok := closers[word]; ok {
				// A tag that ends or divides a block, out of place: say
				// which block is open instead of "unknown tag".
				if len(stops) > 0 {
					return nil, "", &SyntaxError{s.line, fmt.Sprintf("{%% %s %%} where {%% %s %%} was expected: a block opened before it is not closed", word, stops[len(stops)-1])}
				}
				return nil, "", &SyntaxError{s.line, fmt.Sprintf("{%% %s %%} with no {%% %s %%} open", word, opener)}
			}
			n, err := b.statement(word, p, s.line)
			if err != nil {
				return nil, "", err
			}
			if n != nil {
				out = append(out, n)
			}
		}
	}
	if len(stops) > 0 {
		return nil, "", &SyntaxError{b.line, "missing {% " + stops[len(stops)-1] + " %} before the end of the template"}
	}
	return out, "", nil
}

func (b *builder) parserFor(s segment) (*parser, error) {
	toks, err := tokenize(s.text, s.line)
	if err != nil {
		return nil, err
	}
	return &parser{toks: toks, line: s.line}, nil
}

func (b *builder) statement(word string, p *parser, line int) (node, error) {
	switch word {
	case "if":
		return b.ifBlock(p, line)
	case "for":
		return b.forBlock(p, line)
	case "set":
		return b.setStatement(p, line)
	case "macro":
		return b.macroBlock(p, line)
	case "call":
		return b.callBlock(p, line)
	case "filter":
		return b.filterBlock(p, line)
	case "break", "continue":
		return &loopControlNode{word == "break", line}, p.expectEnd()
	case "generation":
		if err := p.expectEnd(); err != nil {
			return nil, err
		}
		body, _, err := b.nodes([]string{"endgeneration"})
		if err != nil {
			return nil, err
		}
		return &generationNode{body, line}, b.stopParser.expectEnd()
	case "include", "import", "from", "extends", "block":
		return nil, &SyntaxError{line, "{% " + word + " %} is not available to chat templates (no other files can be read)"}
	}
	return nil, &SyntaxError{line, "unknown tag {% " + word + " %}"}
}

func (b *builder) ifBlock(p *parser, line int) (node, error) {
	n := &ifNode{line: line}
	for {
		cond, err := p.expression(true)
		if err != nil {
			return nil, err
		}
		if err := p.expectEnd(); err != nil {
			return nil, err
		}
		body, end, err := b.nodes([]string{"elif", "else", "endif"})
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		p = b.stopParser
		switch end {
		case "elif":
			continue
		case "else":
			if err := p.expectEnd(); err != nil {
				return nil, err
			}
			if n.elseBody, _, err = b.nodes([]string{"endif"}); err != nil {
				return nil, err
			}
			return n, b.stopParser.expectEnd()
		default:
			return n, p.expectEnd()
		}
	}
}

func (b *builder) forBlock(p *parser, line int) (node, error) {
	n := &forNode{line: line}
	for {
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		n.targets = append(n.targets, name)
		if !p.isOp(",") {
			break
		}
		p.next()
	}
	if !p.isName("in") {
		return nil, p.errf("expected 'in' in a for loop, found %s", describe(p.peek()))
	}
	p.next()
	var err error
	// The iterable stops before "if" (the loop filter) and "recursive".
	if n.iter, err = p.or(); err != nil {
		return nil, err
	}
	if p.isOp(",") {
		items := []expr{n.iter}
		for p.isOp(",") {
			p.next()
			x, err := p.or()
			if err != nil {
				return nil, err
			}
			items = append(items, x)
		}
		n.iter = &listExpr{pos{line}, items, true}
	}
	if p.isName("if") {
		p.next()
		if n.cond, err = p.expression(false); err != nil {
			return nil, err
		}
	}
	if p.isName("recursive") {
		p.next()
		n.recursive = true
	}
	if err := p.expectEnd(); err != nil {
		return nil, err
	}
	body, end, err := b.nodes([]string{"else", "endfor"})
	if err != nil {
		return nil, err
	}
	n.body = body
	if end == "else" {
		if err := b.stopParser.expectEnd(); err != nil {
			return nil, err
		}
		if n.elseBody, _, err = b.nodes([]string{"endfor"}); err != nil {
			return nil, err
		}
	}
	return n, b.stopParser.expectEnd()
}

func (b *builder) setStatement(p *parser, line int) (node, error) {
	n := &setNode{line: line}
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	if p.isOp(".") {
		p.next()
		attr, err := p.expectName()
		if err != nil {
			return nil, err
		}
		n.ns, n.attr = name, attr
	} else {
		n.names = []string{name}
		for p.isOp(",") {
			p.next()
			more, err := p.expectName()
			if err != nil {
				return nil, err
			}
			n.names = append(n.names, more)
		}
	}
	if p.peek().kind == tkEOF && n.ns == "" && len(n.names) == 1 {
		// {% set x %}...{% endset %}
		body, _, err := b.nodes([]string{"endset"})
		if err != nil {
			return nil, err
		}
		n.body = body
		return n, b.stopParser.expectEnd()
	}
	if err := p.expectOp("="); err != nil {
		return nil, err
	}
	if n.x, err = p.expression(true); err != nil {
		return nil, err
	}
	return n, p.expectEnd()
}

func (b *builder) params(p *parser) ([]param, error) {
	var ps []param
	if err := p.expectOp("("); err != nil {
		return nil, err
	}
	for !p.isOp(")") {
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		prm := param{name: name}
		if p.isOp("=") {
			p.next()
			if prm.def, err = p.expression(false); err != nil {
				return nil, err
			}
		}
		ps = append(ps, prm)
		if !p.isOp(",") {
			break
		}
		p.next()
	}
	return ps, p.expectOp(")")
}

func (b *builder) macroBlock(p *parser, line int) (node, error) {
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	ps, err := b.params(p)
	if err != nil {
		return nil, err
	}
	if err := p.expectEnd(); err != nil {
		return nil, err
	}
	body, _, err := b.nodes([]string{"endmacro"})
	if err != nil {
		return nil, err
	}
	return &macroNode{name, ps, body, line}, b.stopParser.expectEnd()
}

func (b *builder) callBlock(p *parser, line int) (node, error) {
	n := &callBlockNode{line: line}
	if p.isOp("(") {
		ps, err := b.params(p)
		if err != nil {
			return nil, err
		}
		n.params = ps
	}
	x, err := p.expression(false)
	if err != nil {
		return nil, err
	}
	c, ok := x.(*callExpr)
	if !ok {
		return nil, p.errf("{%% call %%} needs a macro call")
	}
	n.call = c
	if err := p.expectEnd(); err != nil {
		return nil, err
	}
	if n.body, _, err = b.nodes([]string{"endcall"}); err != nil {
		return nil, err
	}
	return n, b.stopParser.expectEnd()
}

func (b *builder) filterBlock(p *parser, line int) (node, error) {
	f, err := p.filterCall(nil)
	if err != nil {
		return nil, err
	}
	if err := p.expectEnd(); err != nil {
		return nil, err
	}
	body, _, err := b.nodes([]string{"endfilter"})
	if err != nil {
		return nil, err
	}
	return &filterBlockNode{f, body, line}, b.stopParser.expectEnd()
}
