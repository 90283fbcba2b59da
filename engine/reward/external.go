package reward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The external protocol: the scorer reads one JSON object per completion
// (Input's fields) and writes one reward per line, in order: a number, or
// null / None / nan for "no reward". Anything else is an error naming the
// line, so a scorer that prints a debug line is caught, never misread.

// maxOutput bounds what is read back from a scorer (a runaway program
// printing forever must not exhaust memory).
const maxOutput = 16 << 20

// encodeInputs writes the JSON lines.
func encodeInputs(in []Input) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, x := range in {
		if err := enc.Encode(x); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// ParseRewards reads a scorer's answer: want lines, each a reward. Blank
// lines at the end are ignored; infinities are refused.
func ParseRewards(r io.Reader, want int) ([]float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var out []float64
	blank := 0
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			blank++
			continue
		}
		if blank > 0 {
			return nil, fmt.Errorf("line %d: a reward after a blank line (want exactly one reward per line)", line)
		}
		v, err := parseReward(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, v)
		if len(out) > want {
			return nil, fmt.Errorf("line %d: more rewards than the %d completions sent", line, want)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d rewards for the %d completions sent (want one per line, in order)", len(out), want)
	}
	return out, nil
}

func parseReward(s string) (float64, error) {
	switch strings.ToLower(s) {
	case "null", "none", "nan":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a number (want a reward such as 1, 0.5 or -2, or null for none)", clip(s, 60))
	}
	if math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is infinite; rewards must be finite", clip(s, 60))
	}
	return v, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Command scores by running a program once per batch: the JSON lines on
// its standard input, the rewards read from its standard output.
type Command struct {
	name    string
	Argv    []string
	Timeout time.Duration
}

func (c *Command) Name() string { return c.name }

func (c *Command) Score(ctx context.Context, in []Input) ([]float64, error) {
	body, err := encodeInputs(in)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", c.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = maxOutput, 4096
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	what := fmt.Sprintf("reward %s (%s)", c.name, strings.Join(c.Argv, " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("%s: no answer within %s for %d completions (raise timeout_s?)", what, c.Timeout, len(in))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w%s", what, err, stderrTail(stderr.String()))
	}
	if stdout.over {
		return nil, fmt.Errorf("%s: wrote more than %d bytes", what, maxOutput)
	}
	out, err := ParseRewards(strings.NewReader(stdout.String()), len(in))
	if err != nil {
		return nil, fmt.Errorf("%s: output %w%s", what, err, stderrTail(stderr.String()))
	}
	return out, nil
}

func stderrTail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return "; its stderr: " + s
}

// limitedBuffer keeps the first max bytes written and notes the rest.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// HTTP scores by POSTing the JSON lines (application/x-ndjson) to URL; the
// response body holds the rewards, one per line, with status 200.
type HTTP struct {
	name    string
	URL     string
	Timeout time.Duration
	Client  *http.Client // nil: http.DefaultClient
}

func (h *HTTP) Name() string { return h.name }

func (h *HTTP) Score(ctx context.Context, in []Input) ([]float64, error) {
	body, err := encodeInputs(in)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", h.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	what := fmt.Sprintf("reward %s (%s)", h.name, h.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: no answer within %s for %d completions (raise timeout_s?)", what, h.Timeout, len(in))
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxOutput+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %s: %s", what, resp.Status, clip(strings.TrimSpace(string(data)), 200))
	}
	if len(data) > maxOutput {
		return nil, fmt.Errorf("%s: answer longer than %d bytes", what, maxOutput)
	}
	out, err := ParseRewards(bytes.NewReader(data), len(in))
	if err != nil {
		return nil, fmt.Errorf("%s: answer %w", what, err)
	}
	return out, nil
}
