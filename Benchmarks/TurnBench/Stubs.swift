import ArgumentParser
struct Compare: ParsableCommand { static let configuration = CommandConfiguration(commandName: "compare") }
struct Core: ParsableCommand { static let configuration = CommandConfiguration(commandName: "core") }
