package engine

import (
	"fmt"
	"hash/fnv"
	"math"
)

// Master weights (train.master_weights): the copy of each trainable
// weight that AdamW updates.
//
//   - fp32 (the default): an fp32 master beside the compute copy, which
//     AdamW refreshes from it after every step (the compute copy is the
//     master itself when the backend computes in fp32).
//   - bf16: the bf16 compute copy is the master. AdamW computes the update
//     in fp32 and rounds the result to bf16 stochastically (up with the
//     probability of the distance to the lower neighbour), so updates far
//     below bf16's resolution still move the weight on average. Saves the
//     4 bytes per trainable parameter of the fp32 master; the gradients and
//     AdamW's moments stay fp32. A backend computing in fp32 (cpu) holds
//     the weights in fp32 storage with bf16 values.
//
// The rounding's random bits are a hash of (run seed, optimizer step,
// parameter name, element index): the same on every backend, rank and
// resume, so a checkpoint needs nothing beyond the seed and step it
// already records.
const (
	MastersFP32 = "fp32"
	MastersBF16 = "bf16"
)

// DefaultMasterWeights is train.master_weights when the run config leaves
// it empty.
const DefaultMasterWeights = MastersFP32

// MasterWeights is the rule for train.master_weights: "" is the default
// (fp32); it returns whether the masters are bf16.
func MasterWeights(s string) (bf16 bool, err error) {
	switch s {
	case "":
		return DefaultMasterWeights == MastersBF16, nil
	case MastersFP32:
		return false, nil
	case MastersBF16:
		return true, nil
	}
	return false, fmt.Errorf("train.master_weights: unknown value %q (want %s or %s)", s, MastersFP32, MastersBF16)
}

// StochasticBits are the 16 random bits that round element index of a
// tensor whose step seed (StepSeed) is seed: the top 16 bits of splitmix64 after
// index+1 steps from seed (the generator behind dropout's mask). Every
// backend computes the same bits from (seed, index) alone, in any order.
func StochasticBits(seed, index uint64) uint32 {
	z := seed + (index+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return uint32(z >> 48)
}

// RoundBF16Stochastic rounds x to one of its two bfloat16 neighbours:
// adding the random 16 bits r to the 16 bits bf16 drops carries into the
// kept half with probability (dropped bits)/2^16, so over the 2^16 values
// of r the mean of the result is exactly x. NaN and infinities pass
// through (a NaN stays a NaN).
func RoundBF16Stochastic(x float32, r uint32) float32 {
	u := math.Float32bits(x)
	if u&0x7f800000 == 0x7f800000 {
		if u&0x007fffff != 0 {
			return math.Float32frombits(u | 0x00400000) // quiet NaN
		}
		return x
	}
	u += r & 0xffff
	return math.Float32frombits(u &^ 0xffff)
}

// roundKey is a bf16 master's stochastic-rounding key
// (AdamWSet.RoundSeed): a hash of the run seed and the parameter's name,
// odd so never 0 (0 means round to nearest). It stays the same every step;
// StepSeed mixes the step in.
func roundKey(runSeed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return mix64(runSeed^h.Sum64()) | 1
}

// StepSeed is the seed of StochasticBits for a tensor of rounding key key
// at optimizer step step: the splitmix64 finaliser of key ^ step·φ (φ the
// golden-ratio increment), so every (tensor, step) draws its own stream.
func StepSeed(key uint64, step int) uint64 {
	return mix64(key ^ uint64(step)*0x9e3779b97f4a7c15)
}
