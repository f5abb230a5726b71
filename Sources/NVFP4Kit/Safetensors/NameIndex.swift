/// A set of distinct names, stored as 32-bit keys into the caller's own list of names (open
/// addressing, linear probing, at most half full): a million names cost 8 MiB where a
/// `[String: Int]` costs about 50, and the names themselves are never copied.
struct NameIndex: Sendable {
    /// Power-of-two count; each slot holds a key, or -1 when empty.
    private var slots: [Int32]

    /// An empty index with room for `count` names.
    init(capacity count: Int) {
        precondition(count < Int(Int32.max), "too many names")
        var capacity = 16
        while capacity < count * 2 { capacity <<= 1 }
        slots = Array(repeating: -1, count: capacity)
    }

    /// Indexes `names` by position; a name given twice is a programming error (the header's
    /// parser rejects duplicate keys before this runs).
    init<C: RandomAccessCollection>(_ names: C) where C.Element == String, C.Index == Int {
        self.init(capacity: names.count)
        for position in names.indices {
            let existing = insert(Int32(position), named: names[position]) { names[Int($0)] }
            precondition(existing == nil, "duplicate name \(names[position])")
        }
    }

    /// How many keys were added.
    private(set) var count = 0

    /// Adds `key`, whose name is `name`, unless a key of the same name is there: then returns
    /// that key and adds nothing. `nameOf` gives the name of any key already added. The index
    /// grows past the capacity given at init (rehashing every key's name once per doubling).
    mutating func insert(_ key: Int32, named name: String, nameOf: (Int32) -> String) -> Int32? {
        if (count + 1) * 2 > slots.count { grow(nameOf: nameOf) }
        let mask = slots.count - 1
        var slot = name.hashValue & mask
        while slots[slot] >= 0 {
            if nameOf(slots[slot]) == name { return slots[slot] }
            slot = (slot + 1) & mask
        }
        slots[slot] = key
        count += 1
        return nil
    }

    private mutating func grow(nameOf: (Int32) -> String) {
        let old = slots
        slots = Array(repeating: -1, count: old.count * 2)
        let mask = slots.count - 1
        for key in old where key >= 0 {
            var slot = nameOf(key).hashValue & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = key
        }
    }

    /// The key of `name`, if added; `nameOf` gives the name of any added key.
    func key(of name: String, nameOf: (Int32) -> String) -> Int32? {
        let mask = slots.count - 1
        var slot = name.hashValue & mask
        while slots[slot] >= 0 {
            if nameOf(slots[slot]) == name { return slots[slot] }
            slot = (slot + 1) & mask
        }
        return nil
    }
}
