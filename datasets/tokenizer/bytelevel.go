package tokenizer

// Byte-level BPE (GPT-2, Llama 3, Qwen) stores every vocabulary entry as a
// string of printable stand-in characters, one per byte: printable Latin-1
// bytes stand for themselves and the rest (control bytes, space, and a few
// others) are shifted to U+0100 and up. The tables below translate both ways.
// We encode on raw bytes and translate the vocabulary once at load time, so
// the hot path never builds stand-in strings.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// byteLevelToBytes turns a stand-in string back into the bytes it stands
// for. ok is false when the string holds a character outside the table.
func byteLevelToBytes(s string) (out []byte, ok bool) {
	out = make([]byte, 0, len(s))
	for _, r := range s {
		b, found := runeToByte[r]
		if !found {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

// bytesToByteLevel is the forward translation.
func bytesToByteLevel(b []byte) string {
	out := make([]rune, len(b))
	for i, c := range b {
		out[i] = byteToRune[c]
	}
	return string(out)
}
