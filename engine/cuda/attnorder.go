package cuda

import (
	"fmt"
	"slices"
	"sort"
	"unsafe"
)

// The tensor-core attention kernels give each block 64 rows (queries in
// the forward and dq kernels, keys in the dK/dV kernel), and under the
// causal mask the blocks' work differs up to the sequence length over 64:
// the last queries of a sequence see every key, the first keys are seen by
// every query. Launched in row order, the heaviest blocks of the last
// sequences start last and the grid ends on a few long blocks. So the
// kernels take their rows through an order table, heaviest block first
// (longest-processing-time scheduling), computed here once per layout
// and kept on the device while the layout repeats (every layer of a step).

// attnOrder is the order table of one layout: I32 [2*nBlocks] on the
// device, the query blocks by falling work, then the key blocks.
type attnOrder struct {
	starts []int32 // the layout it was computed for (nil: none yet)
	window int
	ptr    uint64
	bytes  int64
}

// blockOrders computes both orders for sequences starting at starts (the
// last entry is T), 64-row blocks and an optional sliding window.
func blockOrders(starts []int32, window int) (q, k []int32) {
	T := int(starts[len(starts)-1])
	n := (T + attnTCRows - 1) / attnTCRows
	seqOf := make([]int, T) // sequence index of each token
	for s := 0; s+1 < len(starts); s++ {
		for i := starts[s]; i < starts[s+1]; i++ {
			seqOf[i] = s
		}
	}
	qWork, kWork := make([]int, n), make([]int, n)
	for blk := 0; blk < n; blk++ {
		first, last := blk*attnTCRows, min(blk*attnTCRows+attnTCRows, T)-1
		// Queries: keys from the first query's first visible key to the last query.
		lo := int(starts[seqOf[first]])
		if window > 0 {
			lo = max(lo, first-window+1)
		}
		qWork[blk] = last - lo + 1
		// Keys: queries from the first key to one past the last that sees the last key.
		hi := int(starts[seqOf[last]+1])
		if window > 0 {
			hi = min(hi, last+window)
		}
		kWork[blk] = hi - first
	}
	order := func(work []int) []int32 {
		o := make([]int32, n)
		for i := range o {
			o[i] = int32(i)
		}
		sort.SliceStable(o, func(a, b int) bool { return work[o[a]] > work[o[b]] })
		return o
	}
	return order(qWork), order(kWork)
}

// attnBlockOrder returns the device address of the order table for this
// layout (query order first, key order n entries later), uploading it when
// the layout differs from the last one.
func (b *Backend) attnBlockOrder(op string, starts []int32, window int) (qOrder, kOrder uint64, err error) {
	T := int(starts[len(starts)-1])
	n := (T + attnTCRows - 1) / attnTCRows
	if b.attnOrder.starts != nil && b.attnOrder.window == window && slices.Equal(b.attnOrder.starts, starts) {
		return b.attnOrder.ptr, b.attnOrder.ptr + uint64(4*n), nil
	}
	q, k := blockOrders(starts, window)
	table := append(q, k...)
	bytes := int64(4 * len(table))
	if bytes > b.attnOrder.bytes {
		b.rawFree(b.attnOrder.ptr, b.attnOrder.bytes)
		b.attnOrder = attnOrder{}
		p, err := b.rawAlloc(bytes)
		if err != nil {
			return 0, 0, withOp(fmt.Sprintf("%s: block order table of %d entries", op, len(table)), err)
		}
		b.attnOrder = attnOrder{ptr: p, bytes: bytes}
	}
	// A synchronous copy: it waits for the kernels still reading the
	// previous table (the stream blocks on the legacy stream's copies).
	if err := b.drv.call("cuMemcpyHtoD_v2", b.drv.cuMemcpyHtoD, uintptr(b.attnOrder.ptr), uintptr(unsafe.Pointer(&table[0])), uintptr(bytes)); err != nil {
		b.attnOrder.starts = nil
		return 0, 0, withOp(op+": block order table", err)
	}
	b.attnOrder.starts, b.attnOrder.window = slices.Clone(starts), window
	return b.attnOrder.ptr, b.attnOrder.ptr + uint64(4*n), nil
}
