import RekeyAdminModel
import RekeyDirectoryAPI

/// The audit trail, newest first: every admin change and every refused attempt.
package struct AuditOperations: Sendable {
    let flows: Flows

    /// `target` narrows it to one user (or organization, or key), `by` to one actor's records.
    package func records(_ actor: AdminActor, target: String, by: String = "", page: PageRequest) async throws(AdminError) -> Admin.AuditPage {
        try await adminCall {
            var list = Rekey_Directory_V1_ListAuditRecordsRequest()
            list.target = target
            list.actorUserID = by
            list.pageSize = UInt32(clamping: page.size)
            list.pageToken = page.token
            let found = try await self.flows.backends.directory.listAuditRecords(list, options: actor.options)
            return Admin.AuditPage(records: found.records.map(Admin.AuditRecord.init), nextPageToken: found.nextPageToken)
        }
    }
}
