import RekeyNotifierAPI
import RekeyRPC

extension NotifierService {
    /// Who may call what over mutual TLS: the gateway, every method (it uses them all). No other
    /// service calls the notifier.
    package static let callers = CallerPolicy([
        "gateway": [
            Method.Enqueue.descriptor, Method.GetMessage.descriptor, Method.ListMessages.descriptor, Method.ListSuppressions.descriptor,
            Method.RemoveSuppression.descriptor, Method.GetQueueStats.descriptor, Method.SendTest.descriptor, Method.CheckDomain.descriptor,
        ],
    ])

    private typealias Method = Rekey_Notifier_V1_Notifier.Method
}
