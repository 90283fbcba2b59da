package envswitch

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/environment.md from the registry")

// The registry is sorted (Lookup searches it), each name once, and every
// switch says what it does, who reads it and what unset means; a fixed set
// holds its default, a free-form switch has its parser and its words.
func TestRegistryIsComplete(t *testing.T) {
	if !slices.IsSortedFunc(switches, func(a, b Switch) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("switches are not sorted by name")
	}
	for i, s := range switches {
		if i > 0 && switches[i-1].Name == s.Name {
			t.Errorf("%s is listed twice", s.Name)
		}
		if !strings.HasPrefix(s.Name, "WHET_") || s.Doc == "" || s.Reader == "" || s.UnsetMeans() == "" {
			t.Errorf("%s: name, doc, reader or unset missing: %+v", s.Name, s)
		}
		if strings.Contains(s.Doc, "|") {
			t.Errorf("%s: its doc has a | (it breaks the Markdown table)", s.Name)
		}
		switch {
		case s.Values != nil:
			if s.parse != nil || s.Want != "" {
				t.Errorf("%s: a fixed set with a parser or words of its own", s.Name)
			}
			if s.Default != "" && !slices.Contains(s.Values, s.Default) {
				t.Errorf("%s: default %q is not one of %q", s.Name, s.Default, s.Values)
			}
		case s.parse == nil || s.Want == "" || s.Default != "":
			t.Errorf("%s: a free-form switch needs a parser and Want, and no Default", s.Name)
		}
		if got, ok := Lookup(s.Name); !ok || got.Name != s.Name {
			t.Errorf("Lookup(%s) = %v, %v", s.Name, got.Name, ok)
		}
	}
	if _, ok := Lookup("WHET_NO_SUCH"); ok {
		t.Error("Lookup found WHET_NO_SUCH")
	}
}

// The defaults as the readers had them when they read os.Getenv
// themselves ("!= \"0\"" is on by default, "== \"1\"" off, and so on):
// moving a switch into the registry must not change what unset means.
var wantDefaults = map[string]string{
	"WHET_ATTN_BWD_FUSED": "1", "WHET_ATTN_FWD_WS": "1", "WHET_ATTN_HOPPER": "1", "WHET_ATTN_TC256": "1",
	"WHET_BIAS_ATTN_Q8": "0", "WHET_CHAT_BATCH": "1", "WHET_CUDA_ARCH": "", "WHET_CUDA_FUSED_ADAMW": "1",
	"WHET_CUDA_GEMV": "1", "WHET_CUDA_GEMV2": "0", "WHET_CUDA_PDL": "1", "WHET_CUDA_PRECOMPILE": "0",
	"WHET_CUDA_PROFILE": "0", "WHET_CUDA_SYNC": "0", "WHET_CUDA_VISION": "1", "WHET_DECODE": "graph",
	"WHET_DECODE_ARGMAX": "1", "WHET_DECODE_ATTN": "v2", "WHET_DECODE_FUSE": "1", "WHET_DECODE_GEMV": "0",
	"WHET_DECODE_RR_WARPS": "", "WHET_DECODE_STEPS": "", "WHET_DETERMINISTIC": "0", "WHET_DP_NO_OVERLAP": "0",
	"WHET_FUSED_SOFTCAP_CE": "0", "WHET_GEMM_TUNE": "1", "WHET_IMAGES": "", "WHET_LORA_FUSED": "1",
	"WHET_MEMORY_LIMIT": "", "WHET_MLLAMA_BF16": "1", "WHET_NF4_MATVEC": "v2", "WHET_NVRTC_DEFINES": "",
	"WHET_RMSNORM_BWD_V2": "2", "WHET_SAMPLES_BATCH": "1", "WHET_SUMSQ_V2": "1", "WHET_VISION_ATTN_TC": "0",
	"WHET_VISION_ATTN_TC_BWD": "0",
}

// Unset and empty, every switch reads as its default: Choice gives it,
// On is on exactly for the default-on switches, Int says unset.
func TestDefaultWhenUnset(t *testing.T) {
	if len(wantDefaults) != len(switches) {
		t.Errorf("%d defaults pinned here, %d switches registered", len(wantDefaults), len(switches))
	}
	for _, s := range switches {
		want, ok := wantDefaults[s.Name]
		if !ok {
			t.Errorf("%s: no default pinned in wantDefaults", s.Name)
			continue
		}
		for _, unset := range []bool{true, false} {
			if unset {
				os.Unsetenv(s.Name) // t.Setenv below restores the caller's value
			} else {
				t.Setenv(s.Name, "")
			}
			if got := Choice(s.Name); got != want {
				t.Errorf("%s unset (%v): Choice %q, want %q", s.Name, unset, got, want)
			}
			if v, err := Get(s.Name); v != "" || err != nil {
				t.Errorf("%s unset: Get %q, %v", s.Name, v, err)
			}
			if slices.Equal(s.Values, onOff) && On(s.Name) != (want == "1") {
				t.Errorf("%s unset: On %v, want %v", s.Name, On(s.Name), want == "1")
			}
			if _, ok := Int(s.Name); ok {
				t.Errorf("%s unset: Int says set", s.Name)
			}
		}
	}
	if err := CheckEnv(func(string) string { return "" }); err != nil {
		t.Errorf("an empty environment: %v", err)
	}
}

// Every value a switch lists is accepted and read back as itself (On for
// 0 and 1); the free-form switches take what their words say.
func TestAcceptedValues(t *testing.T) {
	for _, s := range switches {
		for _, v := range s.Values {
			t.Setenv(s.Name, v)
			if got, err := Get(s.Name); got != v || err != nil {
				t.Errorf("%s=%s: Get %q, %v", s.Name, v, got, err)
			}
			if Choice(s.Name) != v {
				t.Errorf("%s=%s: Choice %q", s.Name, v, Choice(s.Name))
			}
			if slices.Equal(s.Values, onOff) && On(s.Name) != (v == "1") {
				t.Errorf("%s=%s: On %v", s.Name, v, On(s.Name))
			}
			if err := Check(); err != nil {
				t.Errorf("%s=%s: Check: %v", s.Name, v, err)
			}
		}
		t.Setenv(s.Name, "")
	}
	for name, values := range map[string][]string{
		"WHET_CUDA_ARCH":       {"sm_75", "sm_80", "sm_90", "sm_121"},
		"WHET_DECODE_RR_WARPS": {"1", "16", "32"},
		"WHET_DECODE_STEPS":    {"1", "8", "64"},
		"WHET_MEMORY_LIMIT":    {"80GB", " 24GiB ", "81559MiB", "1000"},
		"WHET_NVRTC_DEFINES":   {"GEMV_EARLY=1", "HOP_BWD_FUSED=1,HOP_BWD_OVL=1", "A, B=2,,", "_X=a b"},
	} {
		for _, v := range values {
			t.Setenv(name, v)
			if got, err := Get(name); got != v || err != nil {
				t.Errorf("%s=%q: Get %q, %v", name, v, got, err)
			}
		}
		t.Setenv(name, "")
	}
	for v, n := range map[string]int{"1": 1, "8": 8, "64": 64} {
		t.Setenv("WHET_DECODE_STEPS", v)
		if got, ok := Int("WHET_DECODE_STEPS"); got != n || !ok {
			t.Errorf("WHET_DECODE_STEPS=%s: Int %d, %v", v, got, ok)
		}
	}
	// WHET_IMAGES folds case and spaces, as the image view did.
	t.Setenv("WHET_IMAGES", " Kitty ")
	if got, err := Get("WHET_IMAGES"); got != "kitty" || err != nil {
		t.Errorf("WHET_IMAGES=' Kitty ': %q, %v", got, err)
	}
}

// A value a switch does not list is refused with one error naming the
// variable, the value and the accepted values (and what unset means); the
// readers then fall back to the default, but Check, which every start
// calls, has said no before.
func TestUnknownValueRefused(t *testing.T) {
	for _, c := range []struct{ name, value, want string }{
		{"WHET_DECODE_ATTN", "v4", `WHET_DECODE_ATTN="v4" is not one of v1, v2, v3 (unset: v2)`},
		{"WHET_GEMM_TUNE", "yes", `WHET_GEMM_TUNE="yes" is not one of 0, 1 (unset: 1)`},
		{"WHET_GEMM_TUNE", "on", `WHET_GEMM_TUNE="on" is not one of 0, 1 (unset: 1)`},
		{"WHET_CUDA_SYNC", "true", `WHET_CUDA_SYNC="true" is not one of 0, 1 (unset: 0)`},
		{"WHET_LORA_FUSED", " 0", `WHET_LORA_FUSED=" 0" is not one of 0, 1 (unset: 1)`},
		{"WHET_RMSNORM_BWD_V2", "3", `WHET_RMSNORM_BWD_V2="3" is not one of 0, 1, 2 (unset: 2)`},
		{"WHET_NF4_MATVEC", "V1", `WHET_NF4_MATVEC="V1" is not one of v1, v2, v2r8 (unset: v2)`},
		{"WHET_DECODE_GEMV", "1", `WHET_DECODE_GEMV="1" is not one of 0, rr (unset: 0)`},
		{"WHET_DECODE", "fast", `WHET_DECODE="fast" is not one of plain, device, graph (unset: graph)`},
		{"WHET_IMAGES", "sixel", `WHET_IMAGES="sixel" is not one of kitty, iterm2, iterm, blocks, halfblocks, text, none, off (unset: detect the terminal)`},
		{"WHET_DECODE_STEPS", "0", `WHET_DECODE_STEPS="0" is not a whole number from 1 to 64 (unset: 1)`},
		{"WHET_DECODE_STEPS", "65", `WHET_DECODE_STEPS="65" is not a whole number from 1 to 64 (unset: 1)`},
		{"WHET_DECODE_RR_WARPS", "x", `WHET_DECODE_RR_WARPS="x" is not a whole number from 1 to 32 (unset: 8, 16 with the RMSNorm, 32 with SwiGLU)`},
		{"WHET_CUDA_ARCH", "9.0", `WHET_CUDA_ARCH="9.0" is not an architecture as NVRTC names it (sm_80, sm_90, sm_121) (unset: the device's)`},
		{"WHET_MEMORY_LIMIT", "0", `WHET_MEMORY_LIMIT="0" is not a size above 0 (80GB, 24GiB, 81559MiB) (unset: no cap): the memory limit must be more than 0 bytes`},
		{"WHET_MEMORY_LIMIT", "80G", `WHET_MEMORY_LIMIT="80G" is not a size above 0 (80GB, 24GiB, 81559MiB) (unset: no cap): size "80G": unknown unit`},
		{"WHET_NVRTC_DEFINES", "A=1,-DB", `WHET_NVRTC_DEFINES="A=1,-DB" is not comma-separated defines, NAME or NAME=VALUE (unset: none): "-DB": a define is NAME or NAME=VALUE, NAME a C identifier`},
	} {
		t.Setenv(c.name, c.value)
		v, err := Get(c.name)
		var e *Error
		if v != "" || !errors.As(err, &e) || e.Name != c.name || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s=%q: Get %q, %v; want the error %q", c.name, c.value, v, err, c.want)
		}
		if cerr := Check(); cerr == nil || !strings.Contains(cerr.Error(), c.want) {
			t.Errorf("%s=%q: Check %v", c.name, c.value, cerr)
		}
		if got, want := Choice(c.name), wantDefaults[c.name]; got != want {
			t.Errorf("%s=%q: Choice %q, want the default %q", c.name, c.value, got, want)
		}
		if _, ok := Int(c.name); ok {
			t.Errorf("%s=%q: Int took it", c.name, c.value)
		}
		t.Setenv(c.name, "")
	}
	// Two at once: both named, in one line.
	env := map[string]string{"WHET_DECODE_ATTN": "v4", "WHET_SUMSQ_V2": "2", "WHET_DECODE": "graph"}
	err := CheckEnv(func(k string) string { return env[k] })
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `WHET_DECODE_ATTN="v4"`) ||
		!strings.Contains(err.Error(), `WHET_SUMSQ_V2="2"`) || strings.Contains(err.Error(), "WHET_DECODE=") {
		t.Errorf("CheckEnv: %v", err)
	}
	if _, err := Parse("WHET_NO_SUCH", "1"); err == nil || !strings.Contains(err.Error(), "WHET_NO_SUCH") {
		t.Errorf("Parse of an unregistered name: %v", err)
	}
}

// Set lists the WHET_* variables set, sorted, each checked; names the
// registry lacks are kept (whet env reports them) with a near name.
func TestSet(t *testing.T) {
	got := Set([]string{"PATH=/bin", "WHET_GEMM_TUNE=yes", "WHET_DECODE_ATN=v1", "WHET_CUDA_SYNC=1", "WHET_EMPTY=", "WHETX=1"})
	if len(got) != 3 || got[0].Name != "WHET_CUDA_SYNC" || got[1].Name != "WHET_DECODE_ATN" || got[2].Name != "WHET_GEMM_TUNE" {
		t.Fatalf("Set = %+v", got)
	}
	if !got[0].Known || got[0].Err != nil || got[1].Known || got[1].Err != nil || !got[2].Known || got[2].Err == nil {
		t.Errorf("Set = %+v", got)
	}
	if near, ok := Nearest("WHET_DECODE_ATN"); !ok || near != "WHET_DECODE_ATTN" {
		t.Errorf("Nearest(WHET_DECODE_ATN) = %q, %v", near, ok)
	}
	if near, ok := Nearest("WHET_TEST_LOCK_DIR"); ok {
		t.Errorf("Nearest(WHET_TEST_LOCK_DIR) = %q", near)
	}
}

// ParseArch reads NVRTC's spelling.
func TestParseArch(t *testing.T) {
	for s, want := range map[string][2]int{"sm_80": {8, 0}, "sm_90": {9, 0}, "sm_121": {12, 1}, "sm_75": {7, 5}} {
		if major, minor, err := ParseArch(s); err != nil || major != want[0] || minor != want[1] {
			t.Errorf("%s: %d.%d, %v", s, major, minor, err)
		}
	}
	for _, bad := range []string{"", "sm_9", "sm_1210", "90", "sm_9a", "SM_90"} {
		if _, _, err := ParseArch(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The program reads no WHET_* variable but through this package: a
// "WHET_..." string in a non-test Go file outside it is a registered
// switch, and no such file calls os.Getenv or os.LookupEnv on one.
func TestEverySwitchIsRegistered(t *testing.T) {
	root := filepath.Join("..", "..")
	lit := regexp.MustCompile(`"(WHET_[A-Z0-9_]+)"`)
	read := regexp.MustCompile(`os\.(Getenv|LookupEnv)\(("WHET_|[A-Za-z0-9.]*Env\)|EnvVar\))`)
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", ".dev", "testdata", "node_modules":
				return filepath.SkipDir
			}
			if path == filepath.Join(root, "engine", "envswitch") {
				return filepath.SkipDir // this package
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]] = true
			if _, ok := Lookup(m[1]); !ok {
				t.Errorf("%s: %s is not in the registry (engine/envswitch/switches.go)", path, m[1])
			}
		}
		if m := read.FindString(string(src)); m != "" {
			t.Errorf("%s: %s...: read it through envswitch", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range switches {
		if !seen[s.Name] {
			t.Errorf("%s is registered but no Go file outside this package names it", s.Name)
		}
	}
}

// docs/environment.md is Markdown(): regenerate it with -update.
func TestDocs(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "environment.md")
	want := Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the registry: run go test ./engine/envswitch -run TestDocs -update", path)
	}
	for _, s := range switches {
		if !strings.Contains(string(got), "`"+s.Name+"`") {
			t.Errorf("%s does not list %s", path, s.Name)
		}
	}
}

// FuzzParse: no value makes a switch's parser panic; an accepted value
// parses again to itself (one of the listed values where there is a list),
// and a refused one is named in its error with the variable.
func FuzzParse(f *testing.F) {
	for _, s := range switches {
		for _, v := range s.Values {
			f.Add(s.Name, v)
		}
		f.Add(s.Name, "x")
	}
	f.Add("WHET_MEMORY_LIMIT", "80GB")
	f.Add("WHET_NVRTC_DEFINES", "A=1,,B")
	f.Add("WHET_CUDA_ARCH", "sm_121")
	f.Add("WHET_DECODE_STEPS", "64")
	f.Fuzz(func(t *testing.T, name, v string) {
		s, ok := Lookup(name)
		if !ok {
			s = switches[len(name)%len(switches)]
		}
		got, err := s.Parse(v)
		if err != nil {
			var e *Error
			if got != "" || !errors.As(err, &e) || e.Name != s.Name || !strings.HasPrefix(err.Error(), s.Name+"=") {
				t.Fatalf("%s=%q: %q, %v", s.Name, v, got, err)
			}
			return
		}
		if got == "" {
			return
		}
		if s.Values != nil && !slices.Contains(s.Values, got) {
			t.Fatalf("%s=%q: accepted as %q, not one of %q", s.Name, v, got, s.Values)
		}
		if again, err := s.Parse(got); again != got || err != nil {
			t.Fatalf("%s=%q: %q parses again as %q, %v", s.Name, v, got, again, err)
		}
	})
}
