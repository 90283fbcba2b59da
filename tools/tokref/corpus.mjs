// Writes testdata/tokenizer/corpus.jsonl: strings chosen to break
// tokenizers (whitespace runs, CRLF, fixed-column code, digits, emoji with
// ZWJ, CJK, combining marks, special tokens written inline, ...), one JSON
// string per line. Run from the repository root: node tools/tokref/corpus.mjs
// The output is committed; rerun only to extend the corpus, then rerun
// ref.mjs to refresh the reference ids.
import { writeFileSync } from "node:fs";

const c = [];
const add = (...xs) => c.push(...xs);

// Empty, tiny, whitespace.
add("", " ", "  ", "\n", "\t", "\r\n", "\r", "a", "A", "!", "'", "0");
add("hello", "hello ", "hello  ", "hello\n", "hello \n", " hello", "   hello", "hello world");
add("a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a \t b", "a\n\nb", "a \n\n b", "a\n \n b");
add("    ", "\n\n\n", " \n ", "\t\n\t", "  \r\n  ", "x\r\n\r\ny", "line1\r\nline2\r\n", "end\r", "\r\n\r\n");
add("trailing spaces   ", "trailing tab\t", "  both  ", "\n leading newline", "spaces before newline   \nnext");
add("a\u00a0b", "a\u3000b", "a\u2009b", "a\u200bb", "a\u2028b", "x \u00a0 y", "tab\u00a0\tnbsp");

// English and contractions.
add("The quick brown fox jumps over the lazy dog.");
add("I'm sure you'll see they've done what we'd said, isn't it?");
add("IT'S ALL CAPS AND WE'RE SHOUTING, AREN'T WE'LL'D");
add("rock 'n' roll", "'tis the season", "x's y't", "''quoted''", "it’s curly", "L'amour et l'été");
add("Hello, World! How are you doing today? I'm fine -- thanks.");
add("e.g. i.e. etc. Mr. Smith vs. Dr. Jones; a/b, c\\d, [x] {y} (z)");
add("!!!", "...", "?!?!", "—", "“quoted”", "«guillemets»", "¿Qué? ¡Sí!", "---", "***bold***", "__init__");

// Numbers.
add("1", "12", "123", "1234", "12345", "123456789", "12345678901234567890", "3.14159265358979");
add("-42", "+7", "1,000,000", "1 000 000", "0x1F2E3D", "0b1010", "1e-10", "6.022e23", "$19.99", "50%", "v1.2.3");
add("Call 555-0123 or +1 (800) 555-0199 by 2024-03-15T12:34:56Z");
add("٣٤٥ ١٢", "²³ ¼ ½", "Ⅻ Ⅳ", "１２３４ ＡＢＣ", "१२३ ๑๒๓", "x1y22z333w4444");

// Code with indentation.
add(`def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)
`);
add(`class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)  # trailing comment    
`);
add(`func main() {
\tfor i := 0; i < 10; i++ {
\t\tif i%2 == 0 {
\t\t\tfmt.Println(i)
\t\t}
\t}
}
`);
add(`package main

import (
\t"fmt"
\t"os"
)

type Point struct {
\tX, Y int // coordinates
}
`);
add(`const add = (a, b) => a + b;
function greet(name) {
  console.log(\`Hello, \${name}!\`);
  return { ok: true, name };
}
`);
add(`#include <stdio.h>

int main(int argc, char **argv) {
    printf("%d args\\n", argc);
    return 0;
}
`);
add(`fn main() {
    let v: Vec<i32> = (0..10).map(|x| x * x).collect();
    println!("{:?}", v);
}
`);
add(`#!/bin/bash
set -euo pipefail
for f in *.txt; do
  echo "$f" | tr 'a-z' 'A-Z' >> out.log 2>&1
done
`);
add(`{"name": "whet", "version": "0.1.0", "nested": {"a": [1, 2, 3], "b": null, "c": true}}`);
add(`server:
  port: 8080
  hosts:
    - alpha.local
    - beta.local
  tls: {enabled: false}
`);
add(`<!DOCTYPE html>
<html>
  <body>
    <div class="main"><p>Hello &amp; welcome</p></div>
  </body>
</html>
`);
add(`SELECT u.id, COUNT(*) AS n
FROM users u
LEFT JOIN orders o ON o.user_id = u.id
WHERE u.created_at >= '2024-01-01'
GROUP BY u.id HAVING n > 5;
`);
add(`all: build

build:
\tgo build -o bin/app ./cmd/app

clean:
\trm -rf bin
`);
add(`--- a/main.go
+++ b/main.go
@@ -1,4 +1,5 @@
 package main
+import "fmt"
-func old() {}
+func new() { fmt.Println("x") }
`);
add(`^(?:[a-z0-9!#$%&'*+/=?^_\`{|}~-]+)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$`);
add(`if (x == 1) {\r\n    y = 2;\r\n}\r\n`);
add(`    indented by four\n        by eight\n\t\tby two tabs\n  \t mixed\n`);
add(`x = [\n    1,\n    2,\n]\n\n\n\ny = 3`);
add(`# Title\n\n- item one\n- item two\n  - nested\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\`\`\`python\nprint("hi")\n\`\`\`\n`);
add(`\\begin{equation} \\frac{a}{b} = \\sum_{i=1}^{n} x_i^2 \\end{equation}`);
add(`∑_{i=1}^{n} x_i² ≤ ∞, ∀ε>0 ∃δ: |x−y|<δ ⇒ |f(x)−f(y)|<ε`);

// COBOL fixed columns (sequence area, indicator, areas A and B).
add(`000100 IDENTIFICATION DIVISION.                                          HELLO001
000200 PROGRAM-ID. HELLO-WORLD.                                         HELLO002
000300 PROCEDURE DIVISION.                                              HELLO003
000400     DISPLAY 'HELLO, WORLD'.                                      HELLO004
000500     STOP RUN.                                                    HELLO005
`);
add(`       IDENTIFICATION DIVISION.
       PROGRAM-ID. PAYROLL.
       DATA DIVISION.
       WORKING-STORAGE SECTION.
       01  WS-TOTAL        PIC 9(7)V99 VALUE ZEROS.
       01  WS-NAME         PIC X(30).
      *    THIS IS A COMMENT LINE
           MOVE 'SMITH' TO WS-NAME.
`);
add(`      *> free-format comment\r\n       01 REC.\r\n          05 FLD-A PIC X(10).\r\n          05 FLD-B PIC S9(4) COMP-3.\r\n`);

// Fortran fixed form (label in 1-5, continuation in 6, code from 7).
add(`      PROGRAM HELLO
C     A FIXED-FORM COMMENT
      INTEGER I, N
      REAL*8 X(100)
      DO 10 I = 1, N
         X(I) = DBLE(I) * 2.5D0
   10 CONTINUE
     1  , 42
      WRITE(*,*) 'DONE'
      END
`);
add(`c234567890\n      subroutine saxpy(n, a, x, y)\n      real a, x(*), y(*)\n      do i = 1, n\n        y(i) = a*x(i) + y(i)\n      end do\n      end\n`);

// Emoji (ZWJ sequences, skin tones, flags, keycaps, variation selectors).
add("👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "❤️", "🇫🇷🇯🇵", "1️⃣", "🧑🏿‍💻 coding", "I ❤️ 🍕!!", "😀😃😄😁", "🤷‍♀️🤷‍♂️", "©️®️™️");
add("family: 👨‍👩‍👧 and 👩‍❤️‍💋‍👨 ok", "emoji at end 🎉", "🎉 at start");

// CJK and other scripts.
add("你好，世界！", "我爱自然语言处理。", "日本語のテキストです。カタカナとひらがな。", "한국어 문장입니다.");
add("中文English混合text测试123", "東京都渋谷区1-2-3", "これは、テスト。「引用」");
add("Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก");
add("வணக்கம் உலகம்", "გამარჯობა მსოფლიო", "Բարեւ աշխարհ", "ሰላም ለዓለም", "Xin chào thế giới", "Ελληνικά και English mixed");
add("abc абв αβγ אבג 가나다 かな カナ 漢字");

// Combining marks and normalization.
add("e\u0301", "caf\u00e9 vs cafe\u0301", "n\u0303", "A\u030a vs \u00c5", "Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o", "a\u0300\u0301\u0302");
add("Ǆ ǅ ǆ", "Straße STRASSE", "İstanbul ıi", "ﬁ ﬂ", "Å Ω K", "\u1100\u1161\u11a8", "ḱṷṓn");

// Special tokens written inline, of each family.
add("<|begin_of_text|>Hello", "Hi<|eot_id|>\n", "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
add("<|eot_id|><|eot_id|>", " <|eot_id|> ", "text<|end_of_text|>more", "<|reserved_special_token_5|>");
add("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
add("<|endoftext|>", "<think>\nreasoning\n</think>\n\nanswer", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>");
add("<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", "<bos><eos><pad>", "<start_of_image>");
add("<s>", "</s>", "<s>[INST] hi [/INST] hello</s>", "<unk>", "a<s>b</s>c", " <s> ", "<s><s>");
add("<|im_start", "<|eot_id", "<|eot_id|", "< |eot_id|>", "<<|eot_id|>>", "<|EOT_ID|>", "<|im_end|>x<|im_end|>");
add("<table><tr><td>1</td></tr></table>", "<h1>Title</h1>\n<p>para</p>", "<unused0>", "[multimodal]");
add("<0x41>", "▁", "▁▁x", "Ġ", "ĠĠhello", "Ċ", "</w>", "<mask>");

// Long words, long runs.
add("supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis");
add("Donaudampfschifffahrtsgesellschaftskapitän", "antidisestablishmentarianism");
add("a".repeat(300), "ab".repeat(150), " ".repeat(100), "\n".repeat(40), "\t".repeat(33), "=".repeat(80), "-".repeat(120));
add("aaaa bbbb " + "x".repeat(70) + " end", "0".repeat(50), "9".repeat(31));
add("https://example.com/path/to/resource?query=param&other=value#fragment");
add("dGhpcyBpcyBhIGJhc2U2NCBibG9iIHRoYXQgZ29lcyBvbiBmb3IgYSB3aGlsZQ==");
add("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
add("thisIsAVeryLongCamelCaseIdentifierNameThatKeepsGoingAndGoing_with_snake_too");
add("長い漢字の連続".repeat(10));
add("🙂".repeat(20));

// Controls and oddities.
add("\x00", "a\x00b", "\x1b[31mred\x1b[0m", "\x7f", "bell\u0007", "\ufffd", "a\ufffdb", "\ue000 private", "x\u00adsoft hyphen");
add("tab\tseparated\tvalues\n1\t2\t3\n", "comma,separated,values\r\n\"q,uoted\",2,3\r\n");
add("Mixed   spacing\t\tand\n\n\nnewlines   \r\n  end  ");
add("   leading and trailing   ", "\n\nparagraph one\n\nparagraph two\n\n");

// Chat-like assistant outputs.
add("Sure! Here's a step-by-step explanation:\n\n1. First, ...\n2. Then, ...\n\n**Note:** done.");
add("```go\nfunc f() int { return 42 }\n```\n\nThis returns `42`.");
add("User: what's 2+2?\nAssistant: 2 + 2 = 4.");

// Structured variations: each base string with CRLF endings and with
// trailing space, so the line-break rules of the split patterns get used.
const bases = [
  "first line\nsecond line\nthird",
  "    x = 1\n    y = 2\n",
  "key: value\n  - item\n",
  "a.b.c\n\nd",
  "// comment\nint x;  \n",
];
for (const b of bases) {
  add(b.replaceAll("\n", "\r\n"), b + " ", b.replaceAll("\n", " \n"), b.replaceAll("    ", "\t"));
}
// Digit grouping around the 3-digit rule.
for (let n = 1; n <= 10; n++) add("n=" + "7".repeat(n) + "!", "7".repeat(n) + "px");
// Space runs before words, punctuation and line breaks.
for (let n = 1; n <= 6; n++) {
  const s = " ".repeat(n);
  add("a" + s + "b", "a" + s + "!", "a" + s + "\n", s + "1", "." + s + "x");
}

// The o200k pattern (GPT-4o, Phi-4-mini) splits words at case changes,
// counts combining marks as part of a word, lets contractions follow a
// word of either case, and keeps "/" and line breaks after punctuation.
add("HTTPServerError parseJSONToXML iPhone McDonald ABCdef", "DON'T Don'T don'T O'NEIL'S");
add("naïve café résumé", "नमस्ते दुनिया", "ǅungla ǈubljana ǋeko", "x/y/z\n", "a.b/\r\n/c", "!/\n\n", "éÉ́é");
add("<|user|>hi<|end|><|assistant|>", "<|endofprompt|> and <|endoftext|>");

const lines = c.map((s) => JSON.stringify(s)).join("\n") + "\n";
writeFileSync("testdata/tokenizer/corpus.jsonl", lines);
console.log(`wrote ${c.length} strings`);
