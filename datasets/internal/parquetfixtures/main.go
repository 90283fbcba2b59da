// Command parquetfixtures writes the Parquet fixtures under
// testdata/datasets (run from the repository root:
// go run ./datasets/internal/parquetfixtures). The files are committed;
// the datasets tests read them.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/parquet-go/parquet-go"
)

type message struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type chatRow struct {
	ID       int64     `parquet:"id"`
	Messages []message `parquet:"messages,list"`
}

type alpacaRow struct {
	Instruction string  `parquet:"instruction"`
	Input       *string `parquet:"input,optional"`
	Output      string  `parquet:"output"`
}

type sharegptTurn struct {
	From  string `parquet:"from"`
	Value string `parquet:"value"`
}

// arrowMessage and arrowRow mirror the schema pyarrow (and so Hugging Face
// datasets) writes: every field optional, lists of optional structs,
// Snappy-compressed, dictionary-encoded strings.
type arrowMessage struct {
	Content *string `parquet:"content,optional,dict"`
	Role    *string `parquet:"role,optional,dict"`
}

type arrowRow struct {
	Messages []*arrowMessage `parquet:"messages,optional,list"`
	Source   *string         `parquet:"source,optional,dict"`
}

type badRoleRow struct {
	Conversations []sharegptTurn `parquet:"conversations,list"`
}

func write[T any](path string, rows []T, options ...parquet.WriterOption) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := parquet.NewGenericWriter[T](f, options...)
	if _, err := w.Write(rows); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func main() {
	if err := run("testdata/datasets"); err != nil {
		fmt.Fprintln(os.Stderr, "parquetfixtures:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	input := "a kind reply"
	chats := []chatRow{
		{1, []message{{"user", "Capital of Japan?"}, {"assistant", "Tokyo."}}},
		{2, []message{{"system", "Rhyme."}, {"user", "Say cat"}, {"assistant", "Cat, hat."}}},
		{3, []message{{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}, {"assistant", "Bye!"}}},
	}
	if err := write(filepath.Join(dir, "messages.parquet"), chats); err != nil {
		return err
	}
	alpaca := []alpacaRow{
		{"Write a greeting.", nil, "Hello there!"},
		{"Rewrite politely.", &input, "Thank you kindly."},
	}
	if err := write(filepath.Join(dir, "alpaca.parquet"), alpaca); err != nil {
		return err
	}
	bad := []badRoleRow{
		{[]sharegptTurn{{"human", "ok"}, {"gpt", "fine"}}},
		{[]sharegptTurn{{"human", "hi"}, {"narrator", "Meanwhile..."}}},
	}
	if err := write(filepath.Join(dir, "bad-role.parquet"), bad); err != nil {
		return err
	}
	str := func(s string) *string { return &s }
	arrow := []arrowRow{
		{Messages: []*arrowMessage{{str("Hi"), str("user")}, {str("Hello!"), str("assistant")}}, Source: str("hand")},
		{Messages: []*arrowMessage{{str("Be short."), str("system")}, {str("2+2?"), str("user")}, {str("4"), str("assistant")}}},
		{Messages: []*arrowMessage{{str("Nothing back"), str("user")}, {nil, str("assistant")}}, Source: str("hand")},
	}
	if err := write(filepath.Join(dir, "messages-arrow.parquet"), arrow, parquet.Compression(&parquet.Snappy)); err != nil {
		return err
	}
	// A file cut short, as an interrupted download leaves it.
	data, err := os.ReadFile(filepath.Join(dir, "messages.parquet"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "truncated.parquet"), data[:len(data)/2], 0o644)
}
