package cuda

import (
	"fmt"
	"strings"
	"testing"

	"whet/kernels"
)

// TestDecodeSplitsV2: attention_decode_v2's blocks per head follow the
// cache's rows (about 64 each), stop at 8 blocks an SM over all heads and
// at 64 (the combine's shared arrays in kernels/decode.cu), and never
// reach 0; and v2 has instances for exactly the dims decodeV2Dim admits.
func TestDecodeSplitsV2(t *testing.T) {
	for _, c := range []struct{ rows, heads, sms, want int }{
		{1, 32, 132, 1},
		{64, 32, 132, 1},
		{65, 32, 132, 2},
		{384, 32, 132, 6},    // Llama-3.2-1B, --seq 128 --decode 256
		{4200, 32, 132, 33},  // capped by 8 blocks an SM
		{100000, 2, 132, 64}, // capped by the shared arrays
		{100000, 1024, 1, 1}, // more heads than blocks allowed
		{500, 8, 0, 1},       // an unknown SM count counts as 1
	} {
		if got := decodeSplitsV2(c.rows, c.heads, c.sms); got != c.want {
			t.Errorf("decodeSplitsV2(%d rows, %d heads, %d SMs) = %d, want %d", c.rows, c.heads, c.sms, got, c.want)
		}
	}
	src, err := kernels.Source("decode.cu")
	if err != nil {
		t.Fatal(err)
	}
	for _, D := range []int{32, 64, 72, 80, 96, 128, 192, 256, 512} {
		has := strings.Contains(src, fmt.Sprintf("void __launch_bounds__(128) attention_decode_v2_d%d(", D))
		if has != decodeV2Dim(D) {
			t.Errorf("head dim %d: decode.cu has attention_decode_v2_d%d: %v; decodeV2Dim: %v", D, D, has, decodeV2Dim(D))
		}
	}
}
