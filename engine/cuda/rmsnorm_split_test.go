package cuda

import "testing"

// TestRMSNormSplits: the row splits of the two-stage and fused RMSNorm
// weight gradients cover every row exactly once (no empty chunk or block,
// which would leave its partials unwritten yet summed), at the shapes the
// models use and at awkward ones.
func TestRMSNormSplits(t *testing.T) {
	for _, sms := range []int{0, 1, 132, 144} {
		for _, rows := range []int{1, 7, 11, 63, 64, 65, 777, 2048, 8192, 8193, 65536, 1 << 20} {
			for _, dim := range []int{8, 61, 128, 200, 2048, 4096, 8192, 16384} {
				chunks, chunkRows := rmsnormWeightChunks(rows, dim, sms)
				if chunks < 1 || chunkRows < 1 || chunks*chunkRows < rows || (chunks-1)*chunkRows >= rows {
					t.Errorf("two-stage rows %d dim %d sms %d: %d chunks of %d rows", rows, dim, sms, chunks, chunkRows)
				}
			}
			blocks, blockRows := rmsnormFusedBlocks(rows, sms)
			if blocks < 1 || blockRows < 1 || blocks*blockRows < rows || (blocks-1)*blockRows >= rows {
				t.Errorf("fused rows %d sms %d: %d blocks of %d rows", rows, sms, blocks, blockRows)
			}
		}
	}
	if chunks, rows := rmsnormWeightChunks(8192, 2048, 132); chunks != 128 || rows != 64 {
		t.Errorf("1B's 8192x2048 on an H100: %d chunks of %d rows, want 128 of 64", chunks, rows)
	}
	if blocks, rows := rmsnormFusedBlocks(8192, 132); blocks != 1024 || rows != 8 {
		t.Errorf("fused 8192 rows on an H100: %d blocks of %d rows, want 1024 of 8", blocks, rows)
	}
}
