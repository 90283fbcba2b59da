package units

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {512, "512 B"}, {1023, "1023 B"}, {1024, "1.00 KiB"}, {1536, "1.50 KiB"},
		{80 << 20, "80.0 MiB"}, {16_000_000_000, "14.9 GiB"}, {141 << 30, "141 GiB"},
		{1023 << 10, "1.00 MiB"}, // not "1023 KiB": three digits at most
		{-3 << 30, "-3.00 GiB"}, {math.MaxInt64, "8.00 EiB"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestBytesOf(t *testing.T) {
	for _, tc := range []struct {
		used, total int64
		want        string
	}{
		{21 << 30, 80 << 30, "21/80 GiB"}, {600 << 20, 80 << 30, "1/80 GiB"}, {96 << 30, 141 << 30, "96/141 GiB"},
		{3277 << 20, 8 << 30, "3.2/8.0 GiB"}, {100, 1000, "100/1000 B"}, {0, 0, "0/0 B"},
	} {
		if got := BytesOf(tc.used, tc.total); got != tc.want {
			t.Errorf("BytesOf(%d, %d) = %q, want %q", tc.used, tc.total, got, tc.want)
		}
	}
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1.00k"}, {14_230, "14.2k"}, {999_999, "1.00M"},
		{41_943_040, "41.9M"}, {494_032_768, "494M"}, {1_235_814_400, "1.24B"}, {8_030_261_248, "8.03B"},
		{-2500, "-2.50k"}, {3e15, "3000T"},
	} {
		if got := Count(tc.n); got != tc.want {
			t.Errorf("Count(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// humanUnit matches a format verb followed by a human unit or count
// suffix: "%.1f GiB", "%.0f MiB", "%d B", "%.1fM", "%.2fB".
var humanUnit = regexp.MustCompile(`%[-+# 0-9.]*[dfgv] ?(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB|k|K|M|G|T)(?:$|[\s),;:/.])`)

// humanSize is the first match of humanUnit that is a size or count, not a
// rate: "%6.0f GB/s" prints a card's published bandwidth in the maker's
// decimal unit, which no formatter here covers.
func humanSize(s string) string {
	for _, loc := range humanUnit.FindAllStringIndex(s, -1) {
		if m := s[loc[0]:loc[1]]; !strings.HasSuffix(m, "/") || !strings.HasPrefix(s[loc[1]:], "s") {
			return m
		}
	}
	return ""
}

// handDuration matches a hand-made clock or span format: "%d:%02d",
// "%dh%02dm", "%dm%02ds", "%.1f hours", "%.0f minutes", "%d days". Decimal
// seconds ("%.1f s" a bench step took) are a measurement printed to its
// precision, not a span for people, and are not matched.
var handDuration = regexp.MustCompile(`%[-+# 0-9.]*d:%0?2d|%[-+# 0-9.]*[dv][hm]%|%[-+# 0-9.]*[dfgv] ?(?:hours?|hrs?|minutes?|mins?|days?)\b`)

// TestOneFormatter: no code outside this package formats a size, a count or
// a span of time by hand (each place had its own rounding and units:
// "14.9 GiB" in one view, "15 GiB" in the next, "1.2G" tokens beside "1.2B"
// parameters; an ETA of "0:24" in the hub beside "0m49s" on the dashboard).
func TestOneFormatter(t *testing.T) {
	root := filepath.Join("..", "..")
	self := filepath.Join(root, "engine", "units")
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// This package is the formatter; testdata and dot folders hold no code of ours.
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || path == self) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if m := humanSize(s); m != "" {
				t.Errorf("%s: %q formats a size or count by hand; use units.Bytes, units.BytesOf or units.Count", fset.Position(lit.Pos()), m)
			}
			if m := handDuration.FindString(s); m != "" {
				t.Errorf("%s: %q formats a span of time by hand; use units.Duration, units.ETA or units.Approx", fset.Position(lit.Pos()), m)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("scanned only %d Go files under %s", files, root)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"85899345920": 85899345920, "80GB": 80e9, "80 GB": 80e9, "24gib": 24 << 30,
		"81559MiB": 81559 << 20, "1.5TB": 1.5e12, "512 B": 512, " 2KiB ": 2048,
	} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, wantErr := range map[string]string{
		"": "empty", "80G": `unknown unit "G"`, "GB": "not start with a number", "1.5": "whole number", "x80GB": "not start with a number",
		"1.2.3GB": "not a number", "99999999999TB": "too large", "-5GB": "negative", "-5": "negative",
	} {
		if _, err := ParseBytes(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseBytes(%q): error %v, want one mentioning %q", in, err, wantErr)
		}
	}
}

// FuzzParseBytes: any input either fails with an error or gives a size
// that is not negative, and that size written in bytes reads back as itself.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"80GB", "24GiB", "1.5 TB", "123", "80G", "", "1e9GB", ".5MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseBytes(%q) = %d", s, n)
		}
		if back, err := ParseBytes(fmt.Sprint(n)); err != nil || back != n {
			t.Fatalf("ParseBytes(%d) = %d, %v", n, back, err)
		}
	})
}
