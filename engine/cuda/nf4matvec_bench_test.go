package cuda

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
)

// BenchmarkNF4MatVec: the NF4 mat-vec of decoding at Llama-3.1-8B's shapes
// (q and o 4096×4096, k and v 1024×4096, gate and up 14336×4096, down
// 4096×14336), the current kernel (v1: matvec_nf4) against matvec_nf4_split
// (and _r8, 8 rows a block), and v2 taking q/k/v and gate/up in one
// launch (MatVecsNF4). GB/s counts the bytes the product must read:
// codes, absmax, x, and y written.
func BenchmarkNF4MatVec(b *testing.B) {
	be := benchBackend(b)
	type weight struct{ n, k int }
	cases := []struct {
		name string
		ws   []weight
	}{
		{"q_4096x4096", []weight{{4096, 4096}}},
		{"k_1024x4096", []weight{{1024, 4096}}},
		{"gate_14336x4096", []weight{{14336, 4096}}},
		{"down_4096x14336", []weight{{4096, 14336}}},
		{"qkv_6144x4096", []weight{{4096, 4096}, {1024, 4096}, {1024, 4096}}},
		{"gateup_28672x4096", []weight{{14336, 4096}, {14336, 4096}}},
	}
	rng := rand.New(rand.NewPCG(8, 21))
	for _, c := range cases {
		k := c.ws[0].k
		x := benchTensor(b, be, engine.BF16, 1, 1, k)
		b.Cleanup(func() { be.Free(x) })
		// One copy of the weights is 2 to 60 MB, within or near the L2
		// cache (50 MB on an H100): the recording cycles through enough
		// copies to read 256 MB, so each product reads HBM.
		type copySet struct{ ys, pks, ams []engine.Tensor }
		bytes := float64(2 * k)
		for _, w := range c.ws {
			bytes += float64(w.n*w.k/2+4*w.n*w.k/nf4Block) + float64(2*w.n)
		}
		copies := max(1, int(256e6/bytes))
		var sets []copySet
		for range copies {
			var s copySet
			for _, w := range c.ws {
				words := make([]int32, w.n*w.k/8)
				for i := range words {
					words[i] = int32(rng.Uint32())
				}
				pk, err := be.Alloc(engine.I32, len(words))
				if err != nil {
					b.Fatal(err)
				}
				if err := be.UploadInt32(pk, words); err != nil {
					b.Fatal(err)
				}
				am := benchTensor(b, be, engine.F32, 0.05, w.n*w.k/nf4Block)
				y, err := be.Alloc(engine.BF16, 1, w.n)
				if err != nil {
					b.Fatal(err)
				}
				s.ys, s.pks, s.ams = append(s.ys, y), append(s.pks, pk), append(s.ams, am)
			}
			sets = append(sets, s)
		}
		b.Cleanup(func() {
			for _, s := range sets {
				for i := range s.ys {
					be.Free(s.ys[i])
					be.Free(s.pks[i])
					be.Free(s.ams[i])
				}
			}
		})
		kernels := []string{"v1", "v2", "v2r8"}
		if len(c.ws) > 1 {
			kernels = append(kernels, "v2fused", "v2r8fused")
		}
		for _, kern := range kernels {
			b.Run(fmt.Sprintf("%s/%s", c.name, kern), func(b *testing.B) {
				env := strings.TrimSuffix(kern, "fused")
				b.Setenv(NF4MatVecEnv, env)
				run := func(s copySet) error {
					if strings.HasSuffix(kern, "fused") {
						ok, err := be.MatVecsNF4(s.ys, x, s.pks, s.ams, false)
						if err == nil && !ok {
							err = fmt.Errorf("MatVecsNF4 declined")
						}
						return err
					}
					for i := range s.ys {
						if err := be.MatVecNF4(s.ys[i], x, s.pks[i], s.ams[i], false); err != nil {
							return err
						}
					}
					return nil
				}
				// One graph launch runs every copy once (as decoding replays
				// its recorded step), so host launch costs stay out.
				rec, err := be.Record(func() error {
					for _, s := range sets {
						if err := run(s); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				defer rec.Free()
				if err := rec.Replay(); err != nil {
					b.Fatal(err)
				}
				if err := be.Sync(); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if err := rec.Replay(); err != nil {
						b.Fatal(err)
					}
				}
				if err := be.Sync(); err != nil {
					b.Fatal(err)
				}
				ops := float64(b.N * len(sets))
				b.ReportMetric(bytes*ops/b.Elapsed().Seconds()/1e9, "GB/s")
				b.ReportMetric(b.Elapsed().Seconds()*1e6/ops, "us/op")
			})
		}
	}
}
