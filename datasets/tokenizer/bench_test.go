package tokenizer

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// benchText assembles about 1 MB of English and code: the Go spec and
// memory model (English prose, tags stripped), Go sources from GOROOT, and
// the tricky corpus. Built from the installed Go so nothing big is
// committed.
func benchText(b *testing.B) string {
	b.Helper()
	root := runtime.GOROOT()
	var sb strings.Builder
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, f := range []string{"doc/go_spec.html", "doc/go_mem.html"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			b.Fatalf("benchmark text: %v", err)
		}
		sb.WriteString(tags.ReplaceAllString(string(data), ""))
	}
	english := sb.Len()
	var files []string
	for _, dir := range []string{"src/fmt", "src/strings", "src/bufio", "src/encoding/json", "src/net/http"} {
		m, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		files = append(files, m...)
	}
	sort.Strings(files)
	for _, f := range files {
		if sb.Len() >= 1<<20-english/4 {
			break
		}
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		sb.Write(data)
	}
	for _, s := range readCorpus(b) {
		sb.WriteString(s)
		sb.WriteByte('\n')
	}
	s := sb.String()
	if len(s) > 1<<20 {
		s = strings.ToValidUTF8(s[:1<<20], "")
	}
	return s
}

// benchEncode times tok encoding benchText, each pass from an empty word
// cache, reports bytes/s and tokens/s, and returns the tokens a pass makes.
func benchEncode(b *testing.B, tok *Tokenizer) int {
	b.Helper()
	text := benchText(b)
	n := len(tok.Encode(text, false))
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.model.mu.Lock()
		clear(tok.model.cache)
		tok.model.mu.Unlock()
		tok.Encode(text, false)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	return n
}

// BenchmarkEncodeLlama3 encodes 1 MB of English and code with the Llama 3
// tokenizer, starting each pass with an empty word cache. Run with -cpu 1
// for the one-core figure in docs/performance.md.
func BenchmarkEncodeLlama3(b *testing.B) {
	tok := referenceTokenizer(b, "llama3")
	n := benchEncode(b, tok)
	b.ReportMetric(float64(n), "tokens/op")
}

// BenchmarkDecodeLlama3 decodes the same text's ids.
func BenchmarkDecodeLlama3(b *testing.B) {
	tok := referenceTokenizer(b, "llama3")
	ids := tok.Encode(benchText(b), false)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Decode(ids, false)
	}
	b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEncodeLlama3Regexp2 is BenchmarkEncodeLlama3 with the split
// pattern run by regexp2 instead of the scanner, to show what the scanner
// buys.
func BenchmarkEncodeLlama3Regexp2(b *testing.B) {
	tok, err := Load(referenceDir(b, "llama3"))
	if err != nil {
		b.Fatal(err)
	}
	tok.pre.(preTokenizerSeq)[0].(*splitPreTokenizer).scan = scanNone
	benchEncode(b, tok)
}

// BenchmarkEncodeOthers is BenchmarkEncodeLlama3 for the other reference
// tokenizers.
func BenchmarkEncodeOthers(b *testing.B) {
	for _, name := range []string{"qwen3", "gemma3", "llama2", "gpt4o"} {
		b.Run(name, func(b *testing.B) {
			benchEncode(b, referenceTokenizer(b, name))
		})
	}
}
