package cuda_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// bf16CPU is engine/cpu holding a model the way this backend does in bf16:
// weights and every activation a bf16 tensor, so each op's output is
// rounded where the GPU's is (engine/cpu rounds a bf16 tensor whenever
// something is written into it), with float32-or-better arithmetic in
// between. What it leaves out are the GPU kernels' own orders of
// summation and pRoundCPU's rounding inside attention.
type bf16CPU struct{ *cpu.Backend }

// ComputeDType makes the engine hold the model in bf16 (engine.ComputeDTyper).
func (bf16CPU) ComputeDType() engine.DType { return engine.BF16 }

// pRoundCPU is bf16CPU whose attention also rounds the softmax numerators
// exp(s - max) to bf16 before they weigh v, the row sums taken unrounded,
// as kernels/attention.cu's tensor-core forward does (FlashAttention 2's
// P in bf16) for the head dims it takes (tcHeadDims, engine/cuda's
// attnTCHeadDims) over bf16 inputs. Sequences here are shorter than the
// kernel's 64-key tile, so every row's max is taken over all its keys, as
// the kernel's is. Attention is forward only: the test does not train
// through it.
type pRoundCPU struct{ bf16CPU }

var tcHeadDims = map[int]bool{16: true, 32: true, 64: true, 80: true, 96: true, 128: true}

// Attention writes out and lse as engine/cpu does, with P rounded for the
// tensor-core head dims.
func (b pRoundCPU) Attention(out, lse, q, k, v engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	if !tcHeadDims[p.HeadDim] || q.DType() != engine.BF16 {
		return b.Backend.Attention(out, lse, q, k, v, seqs, p)
	}
	T := q.Len() / (p.NHeads * p.HeadDim)
	if len(seqs.Starts) < 2 || int(seqs.Starts[len(seqs.Starts)-1]) != T {
		return fmt.Errorf("pRoundCPU attention: %d rows, starts %v", T, seqs.Starts)
	}
	start := make([]int, T)
	for s := 0; s+1 < len(seqs.Starts); s++ {
		for i := seqs.Starts[s]; i < seqs.Starts[s+1]; i++ {
			start[i] = int(seqs.Starts[s])
		}
	}
	return b.attend(out, lse, q, k, v, 0, start, p)
}

// AttentionKV is the cached attention of decoding (engine.KVAttention),
// which engine/cuda runs through the same forward kernels.
func (b pRoundCPU) AttentionKV(out, q, k, v engine.Tensor, qOffset int, p engine.AttnParams) error {
	if !tcHeadDims[p.HeadDim] || q.DType() != engine.BF16 {
		return b.Backend.AttentionKV(out, q, k, v, qOffset, p)
	}
	return b.attend(out, nil, q, k, v, qOffset, make([]int, q.Len()/(p.NHeads*p.HeadDim)), p)
}

// attend runs query rows i at positions qOffset+i over keys from
// start[i] (and the window) to qOffset+i; lse may be nil.
func (b pRoundCPU) attend(out, lse, q, k, v engine.Tensor, qOffset int, start []int, p engine.AttnParams) error {
	H, KVH, D := p.NHeads, p.NKVHeads, p.HeadDim
	T := len(start)
	Tk := k.Len() / (KVH * D)
	if q.Len() != T*H*D || v.Len() != k.Len() || Tk < qOffset+T || out.Len() != T*H*D {
		return fmt.Errorf("pRoundCPU attention: q %d, k %d, v %d, out %d values for %d rows at %d", q.Len(), k.Len(), v.Len(), out.Len(), T, qOffset)
	}
	qd, kd, vd := make([]float32, q.Len()), make([]float32, k.Len()), make([]float32, v.Len())
	for _, c := range []struct {
		t engine.Tensor
		d []float32
	}{{q, qd}, {k, kd}, {v, vd}} {
		if err := b.Download(c.t, c.d); err != nil {
			return err
		}
	}
	od, ld := make([]float32, T*H*D), make([]float32, H*T)
	group := H / KVH
	for h := range H {
		for i := range T {
			pos := qOffset + i
			lo := start[i]
			if p.Window > 0 && pos-p.Window+1 > lo {
				lo = pos - p.Window + 1
			}
			qi := qd[(i*H+h)*D : (i*H+h+1)*D]
			sc := make([]float64, pos+1-lo)
			m := math.Inf(-1)
			for j := lo; j <= pos; j++ {
				var dot float64
				for d, x := range kd[(j*KVH+h/group)*D : (j*KVH+h/group+1)*D] {
					dot += float64(qi[d]) * float64(x)
				}
				s := float64(p.Scale) * dot
				if p.SoftCap > 0 {
					s = float64(p.SoftCap) * math.Tanh(s/float64(p.SoftCap))
				}
				sc[j-lo] = s
				m = max(m, s)
			}
			var sum float64
			acc := make([]float64, D)
			for j := lo; j <= pos; j++ {
				e := math.Exp(sc[j-lo] - m)
				sum += e
				pr := float64(cpu.RoundBF16(float32(e)))
				for d, x := range vd[(j*KVH+h/group)*D : (j*KVH+h/group+1)*D] {
					acc[d] += pr * float64(x)
				}
			}
			for d := range D {
				od[(i*H+h)*D+d] = float32(acc[d] / sum)
			}
			ld[h*T+i] = float32(m + math.Log(sum))
		}
	}
	if err := b.Upload(out, od); err != nil {
		return err
	}
	if lse == nil {
		return nil
	}
	return b.Upload(lse, ld)
}

// cloneModel builds ref's model on b with ref's weights.
func cloneModel(t *testing.T, ref *engine.Model, b engine.Backend) *engine.Model {
	t.Helper()
	m, err := engine.NewModel(ref.Cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	copyWeights(t, m, ref)
	return m
}

// bf16WeightsModel is ref on the float32 CPU with every weight rounded to
// bf16: what storing the model in bf16 costs before any arithmetic.
func bf16WeightsModel(t *testing.T, ref *engine.Model) *engine.Model {
	t.Helper()
	m := cloneModel(t, ref, cpu.New())
	for _, p := range m.Params() {
		v, err := m.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] = cpu.RoundBF16(v[i])
		}
		if err := m.B.Upload(p.W, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// maxAbsDiff is the largest |a[i] - b[i]|.
func maxAbsDiff(a, b []float32) float64 {
	var w float64
	for i := range a {
		w = max(w, math.Abs(float64(a[i]-b[i])))
	}
	return w
}

// TestPRoundAttention checks the test's model of the tensor-core forward
// against engine/cpu's attention over the same bf16 inputs (two sequences,
// GQA, a window): every output within P's rounding (2^-8 of the largest
// |v|) plus one bf16 step of the output, some output changed by it, the
// cached form (AttentionKV) giving the last rows of the full one, and a
// head dim the tensor cores do not take left to engine/cpu.
func TestPRoundAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		D, window int
		rounds    bool
	}{{32, 0, true}, {32, 5, true}, {64, 0, true}, {256, 0, false}} {
		t.Run(fmt.Sprintf("d%d_w%d", c.D, c.window), func(t *testing.T) {
			const T, H, KVH = 20, 4, 2
			b := pRoundCPU{bf16CPU{cpu.New()}}
			p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: c.D, Scale: float32(1 / math.Sqrt(float64(c.D))), Window: c.window}
			tensor := func(rows, width int, std float64) engine.Tensor {
				n := rows * width
				x, err := b.Alloc(engine.BF16, rows, width)
				if err != nil {
					t.Fatal(err)
				}
				v := make([]float32, n)
				for i := range v {
					v[i] = float32(rng.NormFloat64() * std)
				}
				if err := b.Upload(x, v); err != nil {
					t.Fatal(err)
				}
				return x
			}
			// Scores of a few units, so P spreads over many keys.
			q, k, v := tensor(T, H*c.D, 1), tensor(T, KVH*c.D, 2), tensor(T, KVH*c.D, 1)
			seqs := engine.SeqLayout{Starts: []int32{0, 8, T}, MaxLen: 12}
			run := func(f func(out, lse engine.Tensor) error) []float32 {
				out, _ := b.Alloc(engine.BF16, T, H*c.D)
				lse, _ := b.Alloc(engine.F32, H*T)
				if err := f(out, lse); err != nil {
					t.Fatal(err)
				}
				o := make([]float32, T*H*c.D)
				if err := b.Download(out, o); err != nil {
					t.Fatal(err)
				}
				return o
			}
			want := run(func(out, lse engine.Tensor) error { return b.Backend.Attention(out, lse, q, k, v, seqs, p) })
			got := run(func(out, lse engine.Tensor) error { return b.Attention(out, lse, q, k, v, seqs, p) })
			vs := make([]float32, v.Len())
			if err := b.Download(v, vs); err != nil {
				t.Fatal(err)
			}
			var vmax float64
			for _, x := range vs {
				vmax = max(vmax, math.Abs(float64(x)))
			}
			changed := 0
			for i := range want {
				d := math.Abs(float64(got[i] - want[i]))
				if d > vmax/256+bf16Ulp(want[i]) {
					t.Fatalf("out[%d] = %g, engine/cpu %g: more than P's rounding", i, got[i], want[i])
				}
				if d > 0 {
					changed++
				}
			}
			if c.rounds != (changed > 0) {
				t.Fatalf("%d of %d outputs differ from engine/cpu's (head dim %d)", changed, len(want), c.D)
			}
			// The second sequence's last 4 rows through the cache: its 12
			// positions of k and v, queries at 8..11.
			view := func(x engine.Tensor, row0, rows, width int) engine.Tensor {
				vw, err := b.View(x, row0*width, rows, width)
				if err != nil {
					t.Fatal(err)
				}
				return vw
			}
			kv := run(func(out, _ engine.Tensor) error {
				return b.AttentionKV(view(out, 0, 4, H*c.D), view(q, 16, 4, H*c.D), view(k, 8, 12, KVH*c.D), view(v, 8, 12, KVH*c.D), 8, p)
			})
			for i := range 4 * H * c.D {
				if kv[i] != got[16*H*c.D+i] {
					t.Fatalf("AttentionKV row %d value %d = %g, Attention's %g", i/(H*c.D), i%(H*c.D), kv[i], got[16*H*c.D+i])
				}
			}
		})
	}
}
