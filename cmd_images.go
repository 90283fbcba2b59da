package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/tui/components/imageview"
)

func init() {
	register("images", "check every image of a multimodal data file: formats, sizes, unreadable rows (whet train trains on them)", runImages)
}

// runImages is `whet images [--processor gemma3|mllama|FILE] DATA`: it
// reads the images a conversation data file refers to (image parts,
// image/images columns, Parquet {bytes, path} structs), decodes each, and
// reports the ones that cannot be read by row, field and file, so a
// dataset can be cleaned before vision training exists (docs/vision.md).
// With --processor it also says how the processor would cut the images
// (Mllama tile grids, Gemma 3 pan-and-scan crops), from their sizes alone.
func runImages(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proc := fs.String("processor", "", "gemma3, mllama, a model folder or its preprocessor_config.json: also show the tiles or crops each image gets")
	show := fs.Int("show", 0, "draw the images of this row (its line in JSONL, its row number in Parquet, its index in JSON) instead: kitty or iTerm2 graphics where the terminal has them, else coloured half blocks (WHET_IMAGES=kitty|iterm2|blocks|text chooses)")
	cols := fs.Int("cols", 60, "with --show: the width to draw in, in terminal columns")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: whet images [--processor gemma3|mllama|MODEL_DIR|FILE] [--show ROW [--cols N]] DATA.jsonl|.json|.parquet")
		fmt.Fprintln(stderr, "Exits 1 when some image cannot be read; each one is listed with its row, field and file.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch fs.NArg() {
	case 1:
	case 0:
		return errors.New("want the data file to check: whet images DATA.jsonl (or .json, .parquet)")
	default:
		return fmt.Errorf("want one data file, got %d (%s): check them one at a time", fs.NArg(), strings.Join(fs.Args(), ", "))
	}
	var cfg *vision.ProcessorConfig
	switch *proc {
	case "":
	case "gemma3":
		g := vision.DefaultGemma3()
		cfg = &vision.ProcessorConfig{Type: "Gemma3ImageProcessor", Gemma3: &g}
	case "mllama":
		m := vision.DefaultMllama()
		cfg = &vision.ProcessorConfig{Type: "MllamaImageProcessor", Mllama: &m}
	default:
		var err error
		st, serr := os.Stat(*proc)
		file := filepath.Join(*proc, "preprocessor_config.json")
		_, ferr := os.Stat(file)
		switch {
		case serr == nil && st.IsDir() && engine.VisionModelKind(*proc) != "":
			// A vision model's folder: the processor its runs use (its
			// preprocessor_config.json, else the defaults at its tower's size).
			cfg, err = engine.ModelImageProcessor(*proc)
		case serr == nil && st.IsDir() && ferr == nil:
			cfg, err = vision.LoadProcessorConfig(file) // a folder with the file alone
		case serr == nil && st.IsDir():
			cfg, err = engine.ModelImageProcessor(*proc) // says what the folder is not
		default:
			cfg, err = vision.LoadProcessorConfig(*proc)
		}
		if err != nil {
			return err
		}
	}
	path := fs.Arg(0)
	rows, bad, err := datasets.ReadImageRows(path)
	if err != nil {
		return err
	}
	if *show != 0 {
		p, note := showProtocol(stdout)
		return showRow(stdout, path, rows, *show, *cols, p, note)
	}
	modes := map[string]int{}
	layouts := map[string]int{}
	images, wide16, narrow16 := 0, 0, 0
	withImages := 0
	for _, r := range rows {
		if len(r.Images) > 0 {
			withImages++
		}
	}
	bad = append(bad, datasets.CheckImages(path, rows, func(_ datasets.ImageRow, _ datasets.ImageAt, d *vision.Decoded) {
		images++
		modes[fmt.Sprintf("%s %s %d-bit", d.Format, d.Mode, d.BitDepth)]++
		if m, ok := d.Max16(); ok {
			wide16++
			if m < 1<<12 {
				narrow16++
			}
		}
		if cfg != nil {
			layouts[layout(cfg, d.Width, d.Height)]++
		}
	})...)
	total := images
	for _, b := range bad {
		if b.Reason == datasets.ReasonBadImage {
			total++
		}
	}
	fmt.Fprintf(stdout, "%s: %d rows, %d with images; %d images, %d readable\n", path, len(rows), withImages, total, images)
	printCounts(stdout, "  ", modes)
	if wide16 > 0 {
		fmt.Fprintf(stdout, "  %d are 16-bit grayscale: whet keeps their high byte; transformers (Pillow) would clip every sample above 255 to white\n", wide16)
	}
	if narrow16 > 0 {
		fmt.Fprintf(stdout, "  %d of those use 12 bits or fewer (largest sample under 4096), so their high byte is nearly black: window them to 8 bits before training\n", narrow16)
	}
	if cfg != nil {
		fmt.Fprintf(stdout, "%s:\n", cfg.Type)
		printCounts(stdout, "  ", layouts)
	}
	if len(bad) == 0 {
		return nil
	}
	sort.SliceStable(bad, func(i, j int) bool { // file order: JSONL lines, JSON and Parquet rows
		a, b := bad[i].Loc, bad[j].Loc
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Row < b.Row
	})
	for _, b := range bad {
		fmt.Fprintln(stdout, b.Error())
	}
	return fmt.Errorf("%d problem(s) with images in %s", len(bad), path)
}

// layout names what the processor makes of a w×h image.
func layout(cfg *vision.ProcessorConfig, w, h int) string {
	if m := cfg.Mllama; m != nil {
		ch, cw := vision.OptimalCanvas(h, w, m.MaxTiles, m.TileSize)
		return fmt.Sprintf("%d×%d tiles of %d", ch/m.TileSize, cw/m.TileSize, m.TileSize)
	}
	g := cfg.Gemma3
	if !g.PanAndScan {
		return fmt.Sprintf("one %d×%d image", g.Size, g.Size)
	}
	if cols, rows, _, _ := g.PanAndScanGrid(w, h); cols*rows > 0 {
		return fmt.Sprintf("the image and %d crops", cols*rows)
	}
	return "the image alone (no pan-and-scan crops)"
}

func printCounts(w io.Writer, indent string, counts map[string]int) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, counts[k]))
	}
	if len(parts) > 0 {
		fmt.Fprintln(w, indent+strings.Join(parts, ", "))
	}
}

// showProtocol is how --show draws: as imageview.Detect says when stdout
// is a terminal, half blocks into a file or a pipe.
func showProtocol(w io.Writer) (imageview.Protocol, string) {
	f, ok := w.(*os.File)
	if !ok {
		return imageview.Blocks, ""
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return imageview.Blocks, ""
	}
	return imageview.Detect(os.Getenv)
}

// showRow draws the images of one row, each under a line naming it, with
// the protocol p (note says why it was chosen; for text, why nothing is
// drawn).
func showRow(w io.Writer, path string, rows []datasets.ImageRow, n, cols int, p imageview.Protocol, note string) error {
	if cols < 1 {
		return fmt.Errorf("--cols %d: want at least 1", cols)
	}
	for _, r := range rows {
		if r.Loc.Line != n && r.Loc.Row != n {
			continue
		}
		if len(r.Images) == 0 {
			return fmt.Errorf("%s has no images", r.Loc)
		}
		for i, im := range r.Images {
			d, err := im.Ref.Load(filepath.Dir(path))
			if err != nil {
				return fmt.Errorf("%s: field %q: %w", r.Loc, im.Field, err)
			}
			fmt.Fprintf(w, "%s: %s: %s\n", r.Loc, im.Field, imageview.Placeholder(im.Ref.String(), d))
			// Mllama's white-over-transparency is the friendlier preview.
			rgb := d.RGB(vision.AlphaOverWhite, vision.Gray16Scale)
			c, rr := imageview.Cells(rgb.W, rgb.H, cols, cols/2)
			var art string
			switch p {
			case imageview.Kitty:
				c, rr = imageview.Cells(rgb.W, rgb.H, min(cols, imageview.MaxKittyCells), min(cols/2, imageview.MaxKittyCells))
				id := uint32(i%255 + 1)
				if art, err = imageview.KittyTransmit(rgb, id, c, rr); err == nil {
					var cells string
					cells, err = imageview.KittyPlaceholders(id, c, rr)
					art += cells
				}
			case imageview.ITerm2:
				if art, err = imageview.ITerm2Inline(rgb, filepath.Base(im.Ref.Path), c, rr); err == nil {
					art += "\n"
				}
			case imageview.Text:
				if i == 0 {
					art = "(not drawn: " + note + "; WHET_IMAGES=blocks draws it anyway)\n"
				}
			default:
				art, err = imageview.HalfBlocks(rgb, cols, cols/2)
			}
			if err != nil {
				return err
			}
			fmt.Fprint(w, art)
		}
		return nil
	}
	return fmt.Errorf("%s: no row %d with images (rows are counted as in the messages: JSONL lines, Parquet rows, JSON indices)", path, n)
}
