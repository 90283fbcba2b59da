package datasets

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
)

// textEncoding resolves data.encoding: nil for UTF-8 (the default), else
// the single-byte character set the text files are written in. Labels are
// the WHATWG ones browsers accept (latin1 and iso-8859-1 name
// windows-1252, as they do in browsers). Multi-byte encodings (UTF-16,
// Shift JIS, GBK) are refused: x/text replaces their undecodable bytes
// with U+FFFD without saying where, which is what this setting exists to
// prevent.
func textEncoding(name string) (*charmap.Charmap, error) {
	label := strings.ToLower(strings.TrimSpace(name))
	if label == "" {
		return nil, nil
	}
	e, err := htmlindex.Get(label)
	if err != nil {
		return nil, fmt.Errorf("encoding: unknown text encoding %q (want a label such as utf-8, windows-1252, latin1, iso-8859-15 or koi8-r)", name)
	}
	if canonical, _ := htmlindex.Name(e); canonical == "utf-8" {
		return nil, nil
	}
	cm, ok := e.(*charmap.Charmap)
	if !ok {
		return nil, fmt.Errorf("encoding: %q is a multi-byte encoding, which whet does not convert; convert the file to UTF-8 first (e.g. iconv -f %s -t UTF-8)", name, strings.ToUpper(label))
	}
	return cm, nil
}

// charmapReader converts a single-byte encoded file to UTF-8 as it is
// read, and fails on a byte the character set leaves undefined (naming
// its offset in the file) rather than turning it into U+FFFD.
type charmapReader struct {
	src     *bufio.Reader
	cm      *charmap.Charmap
	off     int64  // of the next source byte
	pending []byte // encoded bytes of a rune that did not fit the caller's buffer
}

func newCharmapReader(r io.Reader, cm *charmap.Charmap) *charmapReader {
	return &charmapReader{src: bufio.NewReaderSize(r, 1<<16), cm: cm}
}

func (c *charmapReader) Read(p []byte) (int, error) {
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	var buf [utf8.UTFMax]byte
	for n < len(p) {
		b, err := c.src.ReadByte()
		if err != nil {
			if n > 0 && err == io.EOF {
				return n, nil
			}
			return n, err
		}
		r := c.cm.DecodeByte(b)
		if r == utf8.RuneError {
			return n, fmt.Errorf("byte 0x%02X at byte offset %d of the file is not a %s character", b, c.off, c.cm)
		}
		c.off++
		w := utf8.EncodeRune(buf[:], r)
		k := copy(p[n:], buf[:w])
		n += k
		if k < w {
			c.pending = append(c.pending[:0], buf[k:w]...)
		}
	}
	return n, nil
}
