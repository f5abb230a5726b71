import Foundation
import NVFP4Kit

/// The field tables of `docs/json.md`, read from the Markdown: each table follows a marker
/// `<!-- json: NAME -->` and has rows `| \`path\` | type | meaning |` (see the document's
/// "How to read the tables").
struct JSONSchemaDoc {
    /// One documented field.
    struct Field: Equatable {
        /// JSON types allowed: `string`, `integer`, `number`, `boolean`, `object`, `array`, `null`.
        var types: Set<String>
        /// Marked `(optional)`: may be absent from an object of its parent.
        var optional: Bool
        /// Marked `(verbatim)`: its members are not described.
        var verbatim: Bool
    }

    struct Row {
        var path: String
        var field: Field
    }

    static let knownTypes: Set<String> = ["string", "integer", "number", "boolean", "object", "array", "null"]

    /// Rows by section name, in document order.
    var sections: [String: [Row]] = [:]

    /// `docs/json.md` of this checkout.
    static func load() throws -> JSONSchemaDoc {
        try parse(String(decoding: ToolRunner.readFile(FixturePaths.root + "/docs/json.md"), as: UTF8.self))
    }

    /// Reads every marked table of `text`; throws on a malformed row, an unknown type or a path
    /// listed twice in a section.
    static func parse(_ text: String) throws -> JSONSchemaDoc {
        var doc = JSONSchemaDoc()
        var current: String?
        var inTable = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("<!-- json:") && line.hasSuffix("-->") {
                let name = line.dropFirst("<!-- json:".count).dropLast(3).trimmingCharacters(in: .whitespaces)
                guard doc.sections[name] == nil else { throw ToolRunnerError(message: "docs/json.md: section \(name) marked twice") }
                current = name
                doc.sections[name] = []
                inTable = false
                continue
            }
            guard let section = current else { continue }
            guard line.hasPrefix("|") else {
                if inTable { current = nil }
                continue
            }
            inTable = true
            let cells = splitRow(line)
            guard cells.count == 3 else { throw ToolRunnerError(message: "docs/json.md [\(section)]: not 3 cells: \(line)") }
            if cells[0] == "field" || cells[0].allSatisfy({ $0 == "-" || $0 == ":" }) { continue }
            guard cells[0].hasPrefix("`") && cells[0].hasSuffix("`") && cells[0].count > 2 else {
                throw ToolRunnerError(message: "docs/json.md [\(section)]: field not in backticks: \(line)")
            }
            let path = String(cells[0].dropFirst().dropLast())
            let field = try parseType(cells[1], row: line)
            guard !(doc.sections[section]!.contains { $0.path == path }) else {
                throw ToolRunnerError(message: "docs/json.md [\(section)]: \(path) listed twice")
            }
            doc.sections[section]!.append(Row(path: path, field: field))
        }
        return doc
    }

    /// The cells of a table row, split on `|` not escaped as `\|`, unescaped and trimmed.
    static func splitRow(_ line: String) -> [String] {
        var cells: [String] = []
        var cell = ""
        var escaped = false
        for c in line.dropFirst() {
            if escaped {
                cell.append(c == "|" ? "|" : "\\" + String(c))
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "|" {
                cells.append(cell.trimmingCharacters(in: .whitespaces))
                cell = ""
            } else {
                cell.append(c)
            }
        }
        return cells
    }

    /// `number|null (optional)`, `object (optional, verbatim)`, …
    static func parseType(_ cell: String, row: String) throws -> Field {
        var typeText = cell
        var modifiers: [String] = []
        if let open = cell.firstIndex(of: "("), cell.hasSuffix(")") {
            typeText = String(cell[..<open]).trimmingCharacters(in: .whitespaces)
            modifiers = cell[cell.index(after: open)..<cell.index(before: cell.endIndex)].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let types = Set(typeText.split(separator: "|").map { String($0) })
        guard !types.isEmpty, types.isSubset(of: knownTypes), modifiers.allSatisfy({ $0 == "optional" || $0 == "verbatim" }) else {
            throw ToolRunnerError(message: "docs/json.md: bad type '\(cell)' in \(row)")
        }
        return Field(types: types, optional: modifiers.contains("optional"), verbatim: modifiers.contains("verbatim"))
    }
}

/// One output's schema, put together from sections (some moved under another path), and the
/// check of a real document against it.
struct JSONSchema {
    /// A section, its paths starting with `from` moved to start with `to`.
    struct Part {
        var section: String
        var from = ""
        var to = ""
    }

    private(set) var fields: [String: JSONSchemaDoc.Field] = [:]
    /// Where each path was documented: `section|path as written`.
    private(set) var origin: [String: String] = [:]
    /// Documented members of each object path, by key (`<name>` for a map's keys).
    private var children: [String: [(key: String, field: JSONSchemaDoc.Field)]] = [:]

    init(_ doc: JSONSchemaDoc, _ parts: [Part]) throws {
        for part in parts {
            guard let rows = doc.sections[part.section] else { throw ToolRunnerError(message: "docs/json.md has no section \(part.section)") }
            for row in rows {
                guard row.path.hasPrefix(part.from) else { throw ToolRunnerError(message: "[\(part.section)] \(row.path) is not under \(part.from)") }
                let path = part.to + row.path.dropFirst(part.from.count)
                guard fields[path] == nil else { throw ToolRunnerError(message: "\(path) documented twice (\(origin[path]!), \(part.section))") }
                fields[path] = row.field
                origin[path] = part.section + "|" + row.path
                if path.hasSuffix("[]") { continue }
                let (parent, key) = path.lastIndex(of: ".").map { (String(path[..<$0]), String(path[path.index(after: $0)...])) } ?? ("", path)
                children[parent, default: []].append((key, row.field))
            }
        }
    }

    /// The JSON type name of `value`.
    static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "boolean"
        case .integer: return "integer"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Every way `document` departs from the schema: an undocumented member, a documented
    /// non-optional member missing from an object, a type not documented. `seen` collects the
    /// origins of the paths met.
    func problems(in document: JSONValue, seen: inout Set<String>) -> [String] {
        var problems: [String] = []
        guard case .object = document else { return ["the document is a \(Self.typeName(document)), not an object"] }
        walk(document, "", &problems, &seen)
        var unique = Set<String>()
        return problems.filter { unique.insert($0).inserted }
    }

    private func walk(_ value: JSONValue, _ path: String, _ problems: inout [String], _ seen: inout Set<String>) {
        if !path.isEmpty {
            guard let field = fields[path] else { return }
            seen.insert(origin[path]!)
            let type = Self.typeName(value)
            if !field.types.contains(type) && !(type == "integer" && field.types.contains("number")) {
                problems.append("\(path): is \(type), documented \(field.types.sorted().joined(separator: "|"))")
            }
            if field.verbatim { return }
        }
        switch value {
        case .object(let members):
            let documented = children[path] ?? []
            let mapKey = documented.first { $0.key.hasPrefix("<") && $0.key.hasSuffix(">") }?.key
            for (key, member) in members {
                let child = (path.isEmpty ? "" : path + ".") + (mapKey ?? key)
                if fields[child] == nil {
                    problems.append("\((path.isEmpty ? "" : path + ".") + key): not documented")
                } else {
                    walk(member, child, &problems, &seen)
                }
            }
            let present = Set(members.map(\.key))
            for (key, field) in documented where !field.optional && key != mapKey && !present.contains(key) {
                problems.append("\((path.isEmpty ? "" : path + ".") + key): documented, but missing")
            }
        case .array(let elements):
            let child = path + "[]"
            if !elements.isEmpty && fields[child] == nil {
                problems.append("\(child): not documented")
                return
            }
            for element in elements { walk(element, child, &problems, &seen) }
        default:
            break
        }
    }
}
