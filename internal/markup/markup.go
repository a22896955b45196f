// Package markup turns a chat message's text into the HTML the page shows:
// a small Markdown (emphasis, strong, strikethrough, `code`, fenced and
// indented code blocks, quotes, lists, links and bare URLs made links, a
// newline is a line break), rendered once on the server.
//
// Two layers stand between a message and the page. goldmark parses only the
// constructs above: raw HTML, headings, thematic breaks and images are not
// parsed at all (a "<b>" or a "# x" stays text, escaped), and links keep
// goldmark's own check of dangerous URLs. Its output then goes through a
// bluemonday policy that allows exactly the elements above and, on links,
// only an http, https or mailto href, with rel="noopener noreferrer
// nofollow". Either layer alone would keep script out; both must be broken
// for it to get in.
package markup

import (
	"bytes"
	"html"
	"html/template"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
	"github.com/yuin/goldmark/renderer"
	gmhtml "github.com/yuin/goldmark/renderer/html"
	"github.com/yuin/goldmark/text"
	"github.com/yuin/goldmark/util"
)

// MaxInput is the longest text rendered as Markdown (bytes): far above any
// message the server accepts (a few thousand characters), so only a foreign
// writer reaches it; longer text is shown escaped, as one paragraph, so the
// cost of a render stays bounded whatever Redis holds.
const MaxInput = 64 << 10

// LinkRel is the rel of every link in a message.
const LinkRel = "noopener noreferrer nofollow"

// cacheSize is how many recent renderings a Renderer keeps: more than a
// page (50 messages) or a resume's replay (300) shows, so neither renders
// the same message again; at most a few MB even for texts of 2,000
// characters.
const cacheSize = 512

// A Renderer renders message texts; it is safe for concurrent use, and the
// zero value is not valid (use New).
type Renderer struct {
	md     goldmark.Markdown
	policy *bluemonday.Policy

	mu    sync.Mutex // guards cache
	cache map[string]template.HTML
}

// New returns a Renderer.
func New() *Renderer {
	return &Renderer{md: newMarkdown(), policy: newPolicy(), cache: make(map[string]template.HTML, cacheSize)}
}

// HTML returns text as safe HTML: Markdown rendered, then sanitised. It
// never fails; text that renders to nothing is shown escaped. Recent
// results are reused: a message is rendered when published, and the pages
// and replays that show it again find it rendered.
func (r *Renderer) HTML(text string) template.HTML {
	r.mu.Lock()
	h, ok := r.cache[text]
	r.mu.Unlock()
	if ok {
		return h
	}
	h = r.render(text)
	r.mu.Lock()
	if len(r.cache) >= cacheSize {
		for k := range r.cache { // any one: the map's order is random enough
			delete(r.cache, k)
			break
		}
	}
	r.cache[text] = h
	r.mu.Unlock()
	return h
}

func (r *Renderer) render(text string) template.HTML {
	if len(text) > MaxInput || tooDeep(text) {
		return plain(text)
	}
	var buf bytes.Buffer
	if err := r.md.Convert([]byte(text), &buf); err != nil {
		return plain(text)
	}
	out := strings.TrimSpace(r.policy.Sanitize(buf.String()))
	if out == "" {
		return plain(text)
	}
	return template.HTML(out)
}

// maxDepth is the deepest nesting of quotes and lists rendered: plenty for
// a chat, and parsing time grows with depth × length (a 2,000-character
// line of "> > > …" took 20 ms).
const maxDepth = 16

// tooDeep reports a line that opens more than maxDepth quotes or list
// items: its leading run of markers, spaces and list numbers.
func tooDeep(text string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		depth := 0
	scan:
		for _, c := range []byte(line) {
			switch {
			case c == '>' || c == '-' || c == '*' || c == '+' || c == '.' || c == ')':
				if depth++; depth > maxDepth {
					return true
				}
			case c == ' ' || c == '\t' || (c >= '0' && c <= '9'):
			default:
				break scan
			}
		}
	}
	return false
}

// plain is text escaped, as one paragraph with its line breaks.
func plain(text string) template.HTML {
	return template.HTML("<p>" + strings.ReplaceAll(html.EscapeString(text), "\n", "<br>\n") + "</p>")
}

// newMarkdown is goldmark with CommonMark's block and inline parsers minus
// the ones a chat has no use for or must not have: headings (a line
// starting with # stays a line), thematic breaks, HTML blocks and inline
// raw HTML (so markup typed in a message is text, escaped, rather than
// dropped). Link destinations goldmark deems dangerous are emptied.
func newMarkdown() goldmark.Markdown {
	skip := map[string]bool{}
	for _, p := range []any{parser.NewATXHeadingParser(), parser.NewSetextHeadingParser(),
		parser.NewThematicBreakParser(), parser.NewHTMLBlockParser(), parser.NewRawHTMLParser()} {
		skip[typeName(p)] = true
	}
	keep := func(ps []util.PrioritizedValue) []util.PrioritizedValue {
		var out []util.PrioritizedValue
		for _, p := range ps {
			if !skip[typeName(p.Value)] {
				out = append(out, p)
			}
		}
		return out
	}
	p := parser.NewParser(
		parser.WithBlockParsers(keep(parser.DefaultBlockParsers())...),
		parser.WithInlineParsers(keep(parser.DefaultInlineParsers())...),
		parser.WithParagraphTransformers(parser.DefaultParagraphTransformers()...),
		parser.WithASTTransformers(util.Prioritized(linkRel{}, 1000)),
	)
	return goldmark.New(
		goldmark.WithParser(p),
		goldmark.WithExtensions(
			extension.NewLinkify(extension.WithLinkifyAllowedProtocols([][]byte{
				[]byte("http:"), []byte("https:"), []byte("mailto:")})),
			extension.Strikethrough,
		),
		goldmark.WithRendererOptions(
			gmhtml.WithHardWraps(), // a newline in a chat message is a line break
			renderer.WithNodeRenderers(util.Prioritized(imageAsText{}, 100)),
		),
	)
}

// typeName names a parser by its type (goldmark's parsers are unexported).
func typeName(v any) string { return reflect.TypeOf(v).String() }

// linkRel gives every link, written or linkified, its rel, and turns a
// link to anything but http, https or mailto (relative, javascript:,
// data:, …) back into its text.
type linkRel struct{}

func (linkRel) Transform(doc *ast.Document, reader text.Reader, _ parser.Context) {
	var unlink []ast.Node
	ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch l := n.(type) {
		case *ast.Link:
			if !allowedURL(l.Destination) {
				unlink = append(unlink, n)
				return ast.WalkSkipChildren, nil
			}
			n.SetAttributeString("rel", []byte(LinkRel))
		case *ast.AutoLink:
			// An e-mail address becomes a mailto: link when rendered.
			if l.AutoLinkType != ast.AutoLinkEmail && !allowedURL(l.URL(reader.Source())) {
				unlink = append(unlink, n)
				return ast.WalkSkipChildren, nil
			}
			n.SetAttributeString("rel", []byte(LinkRel))
		}
		return ast.WalkContinue, nil
	})
	for _, n := range unlink {
		parent := n.Parent()
		if l, ok := n.(*ast.AutoLink); ok {
			parent.ReplaceChild(parent, n, ast.NewString(l.Label(reader.Source())))
			continue
		}
		for c := n.FirstChild(); c != nil; {
			next := c.NextSibling()
			parent.InsertBefore(parent, n, c)
			c = next
		}
		parent.RemoveChild(parent, n)
	}
}

// allowedURL reports a link destination of an allowed scheme.
func allowedURL(dest []byte) bool {
	d := strings.ToLower(string(dest))
	for _, scheme := range []string{"http://", "https://", "mailto:"} {
		if strings.HasPrefix(d, scheme) {
			return true
		}
	}
	return false
}

// imageAsText renders an image as its description: a chat shows no
// pictures from elsewhere (a remote image is a tracking pixel).
type imageAsText struct{}

func (imageAsText) RegisterFuncs(reg renderer.NodeRendererFuncRegisterer) {
	reg.Register(ast.KindImage, func(util.BufWriter, []byte, ast.Node, bool) (ast.WalkStatus, error) {
		return ast.WalkContinue, nil
	})
}

// newPolicy is the second layer: only what the Markdown above produces.
func newPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("p", "br", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li")
	p.AllowAttrs("start").Matching(regexp.MustCompile(`^[0-9]{1,9}$`)).OnElements("ol")
	p.AllowAttrs("href").OnElements("a")
	p.AllowAttrs("rel").Matching(regexp.MustCompile(`^` + regexp.QuoteMeta(LinkRel) + `$`)).OnElements("a")
	p.AllowURLSchemes("http", "https", "mailto")
	p.AllowRelativeURLs(false)
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	return p
}
