#!/usr/bin/env python3
"""Small Jinja snippets rendered by jinja2 in transformers' environment, for datasets/jinja.

Usage:  tools/templates/jinja_cases.py     (writes testdata/templates/jinja-cases.json)

Each case is a template and its variables; the file records jinja2's text, or "error" with
the exception's type when jinja2 fails (the Go interpreter must fail too). The snippets
cover what chat templates lean on: whitespace control under trim_blocks/lstrip_blocks,
Python's printing of values, arithmetic, slicing, string methods, filters, tests, loops,
macros and namespaces.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import render  # noqa: E402

V = {
    "s": "  Hello, World  ",
    "n": 7,
    "f": 2.5,
    "items": [3, 1, 2],
    "words": ["b", "A", "c", "a"],
    "msgs": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo", "extra": None},
    ],
    "d": {"z": 1, "a": [1, 2], "m": {"k": "v"}},
    "uni": "héllo wörld ✓ 日本",
    "none": None,
    "t": True,
}

CASES = [
    # whitespace control
    "a\n{% if t %}\nb\n{% endif %}\nc",
    "a\n  {% if t %}\n  b\n  {% endif %}\nc",
    "a  {% if t %}b{% endif %}  c",
    "a\n  {%- if t -%}\n  b\n  {%- endif %}\nc",
    "a\n  {%+ if t %}b{% endif +%}\nc",
    "x {# comment #}\ny\n  {# c2 #}\nz",
    "{% for i in items %}\n  {{ i }}\n{% endfor %}",
    "{{- '  x  ' -}}   \n  {{ 'y' }}",
    "a\r\n{% if t %}\r\nb{% endif %}\r\n",
    "\t{% if t %}tab{% endif %}",
    "{% raw %}{{ x }}{% endraw %}",
    # printing values
    "{{ none }}|{{ t }}|{{ n }}|{{ f }}|{{ 1.0 }}|{{ 1e20 }}|{{ 1e-7 }}|{{ 0.1 + 0.2 }}|{{ 10 / 4 }}|{{ 10 / 5 }}",
    "{{ items }}|{{ words }}|{{ d }}|{{ (1,) }}|{{ (1, 'a') }}|{{ [none, t, 1.5, 'it''s'] }}",
    "{{ ['a\\nb', \"q'\", 'q\"', 'both\\'\"'] }}",
    "{{ undefined_thing }}|{{ d.missing }}|{{ msgs[10] }}",
    "{{ 'a' ~ 1 ~ none ~ t ~ undefined_thing }}",
    # arithmetic and comparisons
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ -n }} {{ n * 'ab' }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ t == 1 }} {{ none == none }}",
    "{{ 'x' in 'xyz' }} {{ 2 in items }} {{ 'z' in d }} {{ 'q' not in d }} {{ not t }} {{ t and 0 }} {{ 0 or 'b' }} {{ none or [] }}",
    "{{ 'yes' if t else 'no' }} {{ 'yes' if none else 'no' }} [{{ 'x' if none }}]",
    "{{ items + [4] }} {{ 'a' + 'b' }} {{ (1, 2) + (3,) }}",
    # subscripts and slicing
    "{{ items[0] }} {{ items[-1] }} {{ items[1:] }} {{ items[::-1] }} {{ items[:-1] }} {{ items[5:] }} {{ items[-10:1] }}",
    "{{ s[2:7] }} {{ uni[1:4] }} {{ uni[::-1] }} {{ uni[-2] }} {{ s[::2] }}",
    "{{ d['a'][1] }} {{ d.m.k }} {{ d['m']['k'] }} {{ msgs[1].role }} {{ msgs[2]['extra'] is none }}",
    # string methods
    "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}]",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }}",
    "{{ s.startswith('  He') }} {{ s.endswith(('x', '  ')) }} {{ 'Hello'.upper() }} {{ 'HeLLo'.lower() }} {{ 'hello world-x'.title() }}",
    "{{ 'aXbXc'.replace('X', '-') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }}",
    "{{ ', '.join(words) }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ 'hello wORLD'.capitalize() }} {{ '123'.isdigit() }}",
    "{{ uni.upper() }} {{ uni.find('✓') }} {{ uni | length }}",
    # filters
    "{{ s | trim }}|{{ s | upper }}|{{ s | lower }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|{{ s | length }}|{{ items | count }}",
    "{{ items | join(', ') }}|{{ msgs | map(attribute='role') | join('/') }}|{{ words | map('upper') | list }}|{{ items | first }}|{{ items | last }}",
    "{{ items | sort }}|{{ words | sort }}|{{ words | sort(case_sensitive=true) }}|{{ items | sort(reverse=true) }}|{{ msgs | sort(attribute='role') | map(attribute='role') | list }}",
    "{{ items | reverse | list }}|{{ 'abc' | reverse }}|{{ [1, 2, 1, 3] | unique | list }}|{{ words | unique | list }}|{{ items | sum }}|{{ items | min }}|{{ items | max }}",
    "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }}|{{ msgs | rejectattr('role', 'eq', 'user') | map(attribute='content') | join(',') }}|{{ items | select('odd') | list }}|{{ items | reject('even') | list }}",
    "{{ msgs | selectattr('extra', 'defined') | list | length }}|{{ msgs | selectattr('extra', 'none') | list | length }}",
    "{{ undefined_thing | default('dflt') }}|{{ '' | default('dflt') }}|{{ '' | default('dflt', true) }}|{{ none | d('x') }}",
    "{{ '42' | int }}|{{ '4.7' | int }}|{{ 'x' | int }}|{{ 3.9 | int }}|{{ '2.5' | float }}|{{ 3 | float }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}",
    "{{ d | items | list }}|{{ d | dictsort }}|{{ d.items() | list }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('z') }}|{{ d.get('q', 'dflt') }}|{{ d.get('q') }}",
    "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}",
    "{{ items | tojson }}|{{ d | tojson }}|{{ uni | tojson }}|{{ msgs[2] | tojson }}|{{ 'q\"\\\\\\n\\t' | tojson }}",
    "{{ d | tojson(indent=2) }}",
    "{{ d | tojson(indent=2, sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}|{{ 1.5 | tojson }}|{{ [1e20, 1e-7, 0.1] | tojson }}",
    "{{ '<a href=\"x\">&</a>' | e }}|{{ 'x' | safe }}|{{ 'hello world  foo' | wordcount }}|{{ 'ab' | center(6) }}|",
    "{{ 5 | string ~ 'x' }}|{{ [1, 2] | string }}|{{ none | string }}",
    # tests
    "{{ x is defined }} {{ n is defined }} {{ none is none }} {{ n is number }} {{ n is integer }} {{ f is float }} {{ 'x' is string }} {{ d is mapping }} {{ items is sequence }} {{ items is iterable }}",
    "{{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ t is true }} {{ t is false }} {{ t is boolean }} {{ 'ab' is lower }} {{ n is not string }} {{ n is eq 7 }} {{ n is gt 3 }} {{ n is in items }}",
    # loops
    "{% for i in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}",
    "{% for i in items %}{% if loop.previtem is defined %}{{ loop.previtem }}<{% endif %}{{ i }}{% if loop.nextitem is defined %}>{{ loop.nextitem }}{% endif %};{% endfor %}",
    "{% for i in items if i > 1 %}{{ i }}{{ loop.index }}{% else %}none{% endfor %}|{% for i in [] %}x{% else %}empty{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'abc' %}{{ c }}.{% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}|{{ range(2, 10, 3) | list }}|{{ range(5, 0, -2) | list }}",
    "{% set x = 1 %}{% for i in items %}{% set x = i %}{% endfor %}{{ x }}",
    "{% set ns = namespace(found=false, n=0) %}{% for m in msgs %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} {{ ns.n }}",
    "{% for m in msgs[::-1] %}{{ m.role[0] }}{% endfor %}",
    "{% for a in [[1, 2], [3]] %}{% for b in a %}{{ loop.index }}{{ b }}{% endfor %};{% endfor %}",
    # set and macros
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = (3, 4) %}{{ c }}",
    "{% set block %}inner {{ n }}{% endset %}[{{ block }}]",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }}",
    "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}body {{ n }}{% endcall %}",
    "{% filter upper %}shout {{ 'this' }}{% endfilter %}",
    "{{ namespace(a=1).a }} {{ dict(x=1, y='2') }} {{ {'k': 'v'}['k'] }}",
    # undefined and errors
    "{{ undefined_thing.attr }}",
    "{{ none.attr }}",
    "{{ 1 + 'a' }}",
    "{{ 'a' < 1 }}",
    "{{ items[0:1:0] }}",
    "{{ raise_exception('custom message') }}",
    "{{ 1 / 0 }}",
    "{% for x in 5 %}{% endfor %}",
    # strings and escapes
    "{{ 'tab\\there' }}|{{ \"dq 'inner'\" }}|{{ 'uni \\u00e9 \\U0001F600' }}|{{ 'a' 'b' }}|{{ 'back\\\\slash' }}",
    "{{ '%d items' | replace('%d', n | string) }}",
    # formatting
    "{{ '%s has %d items (%.2f), %r %%' % ('list', 3, 2.5, 'x') }}|{{ 'n=%s' % n }}|{{ '%s-%s' | format('a', 1) }}",
    "{{ '{} and {}'.format('a', 1) }}|{{ '{1}{0}'.format('x', 'y') }}|{{ '{name}!'.format(name='Ann') }}|{{ '{{literal}}'.format() }}",
    "{{ '%s %s' % ('only one',) }}",
    # trailing newline and CR in literals
    "{{ 'a\\rb' }}\n",
]


def main():
    env = render.environment()
    out = []
    for src in CASES:
        case = {"template": src}
        try:
            case["text"] = env.from_string(src).render(**V)
        except Exception as e:
            case["error"] = type(e).__name__
        out.append(case)
    path = os.path.join(render.TEMPLATES, "jinja-cases.json")
    with open(path, "w", encoding="utf-8", newline="") as f:
        json.dump({"variables": V, "cases": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote %d cases to %s" % (len(out), os.path.relpath(path, render.ROOT)), file=sys.stderr)


if __name__ == "__main__":
    main()
