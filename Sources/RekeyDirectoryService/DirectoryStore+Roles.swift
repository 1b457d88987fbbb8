import RekeyCrypto
import RekeySQLite

/// Roles and the permissions they carry.
extension DirectoryStore {
    package func createRole(name: String, permissions: [String], staff: Bool, actor: ActorInfo, in connection: any SQLConnection) throws -> RoleRecord {
        try DirectoryValidation.roleName(name)
        let known = Set(Permissions.all.map(\.name))
        for permission in permissions where !known.contains(permission) {
            throw DirectoryError.invalidArgument("unknown permission `\(permission.prefix(80))`; known: \(known.sorted().joined(separator: ", "))")
        }
        return try connection.transaction { connection in
            if try connection.queryFirst("SELECT name FROM roles WHERE name = ?", .text(name)) != nil {
                throw DirectoryError.alreadyExists("a role named \(name) exists already (name)")
            }
            try connection.run("INSERT INTO roles (name, staff, builtin) VALUES (?, ?, 0)", .text(name), .integer(staff ? 1 : 0))
            for permission in Set(permissions) {
                try connection.run("INSERT INTO role_permissions (role, permission) VALUES (?, ?)", .text(name), .text(permission))
            }
            try self.audit(actor, "role.create", target: name, detail: permissions.sorted().joined(separator: ","), in: connection)
            return try self.role(named: name, in: connection)
        }
    }

    package func roles(in connection: any SQLConnection) throws -> [RoleRecord] {
        try connection.query("SELECT name FROM roles ORDER BY builtin DESC, name").compactMap { $0.string("name") }.map {
            try self.role(named: $0, in: connection)
        }
    }

    package func role(named name: String, in connection: any SQLConnection) throws -> RoleRecord {
        guard !name.isEmpty else {
            throw DirectoryError.invalidArgument("role is required")
        }
        guard let row = try connection.queryFirst("SELECT * FROM roles WHERE name = ?", .text(name)) else {
            throw DirectoryError.invalidArgument("unknown role `\(name.prefix(80))`")
        }
        let permissions = try connection.query("SELECT permission FROM role_permissions WHERE role = ? ORDER BY permission", .text(name))
            .compactMap { $0.string("permission") }
        return RoleRecord(name: name, permissions: permissions, staff: row.int("staff") == 1, builtin: row.int("builtin") == 1)
    }

    /// Whether the user holds `permission`; never for disabled users.
    package func hasPermission(_ userID: String, _ permission: String, in connection: any SQLConnection) throws -> Bool {
        guard Permissions.all.contains(where: { $0.name == permission }) else {
            throw DirectoryError.invalidArgument("unknown permission `\(permission.prefix(80))`")
        }
        let user = try self.user(userID, in: connection)
        guard user.state == .active else { return false }
        return try self.role(named: user.role, in: connection).permissions.contains(permission)
    }

    /// Whether any user has the owner role (for bootstrapping the first one).
    package func hasOwner(in connection: any SQLConnection) throws -> Bool {
        try connection.queryFirst("SELECT 1 AS x FROM users WHERE role = 'owner' LIMIT 1") != nil
    }
}
