package recipe

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// lineError is an error at a line of the recipe file; Parse reports that
// line instead of the modifier's.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

// decodeStrict decodes a node into v, rejecting keys v does not have.
// Errors name the recipe's own keys and the file's own lines (not Go
// types, not lines counted from the modifier).
func decodeStrict(node *yaml.Node, v any) error {
	if err := checkKeys(node, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	if err := node.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			err := typeError(te.Errors[0])
			var le *lineError
			if errors.As(err, &le) {
				if key := keyAtLine(node, le.line, ""); key != "" {
					le.msg = key + ": " + le.msg
				}
			}
			return err
		}
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

var (
	unmarshalRE = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	yamlKinds   = map[string]string{"seq": "a list", "map": "a mapping", "str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}
)

// typeError rewrites one of yaml's type errors in the recipe's terms.
func typeError(msg string) error {
	m := unmarshalRE.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s", msg)
	}
	var line int
	fmt.Sscan(m[1], &line)
	got := yamlKinds[m[2]]
	if got == "" {
		got = "!!" + m[2]
	}
	if m[3] != "" {
		got = fmt.Sprintf("%q", m[3])
	}
	return &lineError{line, fmt.Sprintf("%s where %s is expected", got, goTypeWords(m[4]))}
}

// goTypeWords names a Go type the way a recipe's reader thinks of it.
func goTypeWords(t string) string {
	switch {
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]") || t == "recipe.stringList":
		return "a list"
	}
	return "a mapping"
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// yamlFields maps the yaml keys of a struct type (inline fields included)
// to their types.
func yamlFields(t reflect.Type, into map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			yamlFields(f.Type, into)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		into[name] = f.Type
	}
}

// checkKeys walks node against the Go type t and reports the first key
// the type does not have, at its line, with the keys allowed there.
func checkKeys(node *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t == reflect.TypeOf(yaml.Node{}) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return nil // Decode reports the mismatch
		}
		fields := map[string]reflect.Type{}
		yamlFields(t, fields)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for n := range fields {
					known = append(known, n)
				}
				sort.Strings(known)
				return &lineError{k.Line, fmt.Sprintf("unknown key %q (known keys%s: %s)", path+k.Value, where(path), strings.Join(known, ", "))}
			}
			if err := checkKeys(v, ft, path+k.Value+"."); err != nil {
				return err
			}
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			if err := checkKeys(node.Content[i+1], t.Elem(), path+node.Content[i].Value+"."); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range node.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s%d.", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return " in " + strings.TrimSuffix(path, ".")
}

// keyAtLine finds the key whose value starts at line, as a dotted path.
func keyAtLine(node *yaml.Node, line int, path string) string {
	switch node.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k := keyAtLine(v, line, path+k.Value+"."); k != "" {
				return k
			}
			if v.Line == line && v.Kind != yaml.MappingNode {
				return path + k.Value
			}
		}
	case yaml.SequenceNode:
		for i, item := range node.Content {
			if k := keyAtLine(item, line, fmt.Sprintf("%s%d.", path, i)); k != "" {
				return k
			}
		}
	}
	return ""
}
