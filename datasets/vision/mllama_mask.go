package vision

// Llama 3.2 Vision's language model sees images only through gated
// cross-attention layers; which text tokens may look at which image (and
// which of its tiles) is the cross-attention mask that MllamaProcessor
// builds from the token ids. These two functions are its
// get_cross_attention_token_mask and
// convert_sparse_cross_attention_mask_to_dense, for one sequence.

// CrossAttentionSpans returns, for each image token (<|image|>) in ids,
// the range [start, end) of token positions that attend to that image:
// from the image token up to the next image token; the last image to the
// end of the sequence (end = len(ids)), a lone image with end -1 ("to the
// end", as transformers writes it). An image token directly followed by
// another shares the later one's end, so images given together are all
// seen by the text that follows them.
func CrossAttentionSpans(ids []int, imageToken int) [][2]int {
	var locs []int
	for i, id := range ids {
		if id == imageToken {
			locs = append(locs, i)
		}
	}
	switch len(locs) {
	case 0:
		return nil
	case 1:
		return [][2]int{{locs[0], -1}}
	}
	spans := make([][2]int, len(locs))
	for i := range locs {
		end := len(ids)
		if i+1 < len(locs) {
			end = locs[i+1]
		}
		spans[i] = [2]int{locs[i], end}
	}
	lastEnd := spans[len(spans)-1][1]
	for i := len(spans) - 1; i >= 0; i-- {
		if spans[i][0] == spans[i][1]-1 {
			spans[i][1] = lastEnd
		}
		lastEnd = spans[i][1]
	}
	return spans
}

// CrossAttentionMask is the dense mask of one sequence of length tokens:
// mask[(t*len(spans)+i)*maxTiles+k] is 1 when token t may attend to tile k
// of image i. numTiles holds each image's real tile count (the
// processor's num_tiles); padded tiles stay 0. Images beyond
// len(numTiles) stay 0, as zip() truncates in transformers.
func CrossAttentionMask(spans [][2]int, numTiles []int, maxTiles, length int) []uint8 {
	n := len(spans)
	mask := make([]uint8, length*n*maxTiles)
	for i, s := range spans {
		if i >= len(numTiles) {
			break
		}
		start, end := s[0], min(s[1], length)
		if end == -1 {
			end = length
		}
		tiles := min(numTiles[i], maxTiles)
		for t := max(start, 0); t < end; t++ {
			for k := 0; k < tiles; k++ {
				mask[(t*n+i)*maxTiles+k] = 1
			}
		}
	}
	return mask
}
