package engine

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// NF4 ("4-bit NormalFloat", Dettmers et al., QLoRA) in bitsandbytes'
// layout: the weight is flattened row-major and cut into blocks of
// NF4BlockSize values; each block keeps its absmax as float32 and each
// value the index (0..15) of the NF4 level nearest to value/absmax. Two
// indices share a byte, the first in the high nibble. So a weight of n
// values takes n/2 bytes plus 4 bytes per 64 values (0.5625 bytes per
// parameter), which is what peers report for QLoRA.
//
// In whet the packed bytes live in an I32 tensor of n/8 elements (the same
// bytes, little-endian, four to an int32) and the absmax in an F32 tensor
// of n/64 elements.

// NF4BlockSize is bitsandbytes' default (and QLoRA's) block size.
const NF4BlockSize = 64

// NF4Levels are the 16 NF4 code values (bitsandbytes' table): quantiles
// of a standard normal scaled to [-1, 1], with an exact 0.
var NF4Levels = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// nf4Mids are the midpoints between neighbouring levels.
var nf4Mids = func() (m [15]float32) {
	for i := range m {
		m[i] = (NF4Levels[i] + NF4Levels[i+1]) / 2
	}
	return m
}()

// nf4MidKeys are the midpoints as order keys (nf4Key).
var nf4MidKeys = func() (k [15]uint64) {
	for i, m := range nf4Mids {
		k[i] = nf4Key(m)
	}
	return k
}()

// nf4Key maps a float32 to an integer whose unsigned order is the floats'
// order (negative values have their bits flipped, positive ones their sign
// bit set), so that x > m becomes a borrow out of a subtraction.
func nf4Key(x float32) uint64 {
	u := math.Float32bits(x)
	return uint64(u ^ (uint32(int32(u)>>31) | 0x80000000))
}

// nf4Code returns the index of the level nearest to x (in [-1, 1]); a value
// exactly between two levels goes to the lower one, as bitsandbytes'
// comparison tree (x > midpoint) does. It is the number of midpoints below
// x, found by a binary search without branches: each step adds its bit
// when the midpoint's key minus x's borrows (x > midpoint). A branching
// search took 25-55 ns a value on random weights (its branches are coin
// flips), most of the 8B QLoRA model's setup; this takes about 4. NaN is
// above no midpoint (code 0), as in the branching search.
func nf4Code(x float32) uint8 {
	if x != x {
		return 0
	}
	k := nf4Key(x)
	c := 8 * ((nf4MidKeys[7] - k) >> 63)
	c += 4 * ((nf4MidKeys[c+3] - k) >> 63)
	c += 2 * ((nf4MidKeys[c+1] - k) >> 63)
	c += (nf4MidKeys[c] - k) >> 63
	return uint8(c)
}

// QuantizeNF4 packs w (len a multiple of NF4BlockSize) into bytes and
// per-block absmax, in parallel over blocks.
func QuantizeNF4(w []float32) (packed []byte, absmax []float32, err error) {
	if len(w)%NF4BlockSize != 0 {
		return nil, nil, fmt.Errorf("nf4: %d values are not a whole number of %d-value blocks", len(w), NF4BlockSize)
	}
	packed = make([]byte, len(w)/2)
	absmax = make([]float32, len(w)/NF4BlockSize)
	parallelBlocks(len(absmax), func(b int) {
		quantizeBlock(w[b*NF4BlockSize:(b+1)*NF4BlockSize], packed[b*NF4BlockSize/2:(b+1)*NF4BlockSize/2], &absmax[b])
	})
	return packed, absmax, nil
}

// QuantizeNF4Words is QuantizeNF4 with the codes straight in the int32
// words of PackNF4Words (what an I32 tensor of the codes holds), without
// the byte slice between.
func QuantizeNF4Words(w []float32) (words []int32, absmax []float32, err error) {
	if len(w)%NF4BlockSize != 0 {
		return nil, nil, fmt.Errorf("nf4: %d values are not a whole number of %d-value blocks", len(w), NF4BlockSize)
	}
	words = make([]int32, len(w)/8)
	absmax = make([]float32, len(w)/NF4BlockSize)
	parallelBlocks(len(absmax), func(b int) {
		quantizeBlockWords(w[b*NF4BlockSize:(b+1)*NF4BlockSize], words[b*NF4BlockSize/8:(b+1)*NF4BlockSize/8], &absmax[b])
	})
	return words, absmax, nil
}

// parallelBlocks runs f for every block index below n, spread over the
// cores in runs of 4096 blocks.
func parallelBlocks(n int, f func(b int)) {
	const perTask = 4096 // blocks
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for b0 := 0; b0 < n; b0 += perTask {
		wg.Add(1)
		sem <- struct{}{}
		go func(b0 int) {
			defer wg.Done()
			defer func() { <-sem }()
			for b := b0; b < min(n, b0+perTask); b++ {
				f(b)
			}
		}(b0)
	}
	wg.Wait()
}

func quantizeBlock(block []float32, out []byte, absmax *float32) {
	var m float32
	for _, v := range block {
		if a := float32(math.Abs(float64(v))); a > m {
			m = a
		}
	}
	*absmax = m
	inv := float32(0)
	if m > 0 {
		inv = 1 / m
	}
	for i := 0; i < len(block); i += 2 {
		out[i/2] = nf4Code(block[i]*inv)<<4 | nf4Code(block[i+1]*inv)
	}
}

// quantizeBlockWords is quantizeBlock writing the block's 32 bytes as 8
// little-endian words.
func quantizeBlockWords(block []float32, out []int32, absmax *float32) {
	var bytes [NF4BlockSize / 2]byte
	quantizeBlock(block, bytes[:], absmax)
	for j := range out {
		out[j] = int32(uint32(bytes[4*j]) | uint32(bytes[4*j+1])<<8 | uint32(bytes[4*j+2])<<16 | uint32(bytes[4*j+3])<<24)
	}
}

// DequantizeNF4 expands packed codes and absmax back to values.
func DequantizeNF4(packed []byte, absmax []float32) []float32 {
	out := make([]float32, len(packed)*2)
	for i, by := range packed {
		s := absmax[(2*i)/NF4BlockSize]
		out[2*i] = NF4Levels[by>>4] * s
		out[2*i+1] = NF4Levels[by&15] * s
	}
	return out
}

// PackNF4Words views packed bytes as little-endian int32 words for an I32
// tensor (len(packed) must be a multiple of 4).
func PackNF4Words(packed []byte) []int32 {
	words := make([]int32, len(packed)/4)
	for i := range words {
		words[i] = int32(uint32(packed[4*i]) | uint32(packed[4*i+1])<<8 | uint32(packed[4*i+2])<<16 | uint32(packed[4*i+3])<<24)
	}
	return words
}

// NF4Dequantizer is implemented by backends that can expand NF4 weights:
// out (n values, compute dtype) from packed (I32, n/8 words, bitsandbytes'
// byte order) and absmax (F32, n/NF4BlockSize).
type NF4Dequantizer interface {
	DequantizeNF4(out, packed, absmax Tensor) error
}

// QuantState is a frozen weight stored in NF4.
type QuantState struct {
	Packed, Absmax Tensor
}

// QuantizeBase replaces the frozen weights of every decoder linear with NF4
// (QLoRA's base): each is downloaded, quantized on the host and stored
// packed; the full-precision copy is freed. Embeddings, norms and the head
// stay in the compute dtype, as bitsandbytes leaves them.
func (m *Model) QuantizeBase() error {
	if _, ok := m.B.(NF4Dequantizer); !ok {
		return fmt.Errorf("backend %s cannot dequantize NF4 weights (QLoRA)", m.B.Name())
	}
	for _, lin := range m.Linears() {
		p := lin.W
		if p.Trainable {
			return fmt.Errorf("qlora: %s is trainable; only frozen weights are quantized", p.Name)
		}
		n := numel(p.Shape)
		v := make([]float32, n)
		if err := m.B.Download(p.W, v); err != nil {
			return fmt.Errorf("qlora: download %s: %w", p.Name, err)
		}
		words, absmax, err := QuantizeNF4Words(v)
		if err != nil {
			return fmt.Errorf("qlora: %s %v: %w", p.Name, p.Shape, err)
		}
		pk, err := m.B.Alloc(I32, len(words))
		if err != nil {
			return fmt.Errorf("qlora: allocate %s: %w", p.Name, err)
		}
		am, err := m.B.Alloc(F32, len(absmax))
		if err != nil {
			m.B.Free(pk)
			return fmt.Errorf("qlora: allocate %s absmax: %w", p.Name, err)
		}
		if err := m.B.UploadInt32(pk, words); err != nil {
			return err
		}
		if err := m.B.Upload(am, absmax); err != nil {
			return err
		}
		m.B.Free(p.W)
		p.W = nil
		p.Quant = &QuantState{Packed: pk, Absmax: am}
	}
	return nil
}
