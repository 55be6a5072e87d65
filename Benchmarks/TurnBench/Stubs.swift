import ArgumentParser
struct AllocRate: ParsableCommand { static let configuration = CommandConfiguration(commandName: "alloc-rate") }
struct Compare: ParsableCommand { static let configuration = CommandConfiguration(commandName: "compare") }
struct Core: ParsableCommand { static let configuration = CommandConfiguration(commandName: "core") }
