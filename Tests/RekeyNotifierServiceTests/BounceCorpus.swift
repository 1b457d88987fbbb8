import Foundation

/// Bounce and complaint reports as the big providers send them, written from their published
/// formats (RFC 3464 DSNs, RFC 5965 ARF) and the shapes they take in practice: Postfix, Gmail,
/// Exchange Online (Outlook.com), Yahoo, and a Yahoo feedback-loop complaint. Addresses and ids
/// are made up; `MESSAGE_ID` stands for the original message's Message-ID.
enum BounceCorpus {
    static func fill(_ text: String, messageID: String) -> [UInt8] {
        Array(text.replacingOccurrences(of: "MESSAGE_ID", with: messageID).replacingOccurrences(of: "\n", with: "\r\n").utf8)
    }

    /// Postfix's own bounce (what a Postfix relay writes when the next hop refuses later).
    static let postfix = """
        Return-Path: <>
        Delivered-To: bounces+m_0123@bounces.rekey.example
        From: MAILER-DAEMON@relay.rekey.example (Mail Delivery System)
        Subject: Undelivered Mail Returned to Sender
        To: bounces+m_0123@bounces.rekey.example
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status;
        \tboundary="4C1D2E3F.1700000000/relay.rekey.example"

        This is a MIME-encapsulated message.

        --4C1D2E3F.1700000000/relay.rekey.example
        Content-Description: Notification
        Content-Type: text/plain; charset=us-ascii

        This is the mail system at host relay.rekey.example.

        I'm sorry to have to inform you that your message could not
        be delivered to one or more recipients.

        <jane@example.com>: host mx.example.com[192.0.2.25] said: 550 5.1.1
            <jane@example.com>: Recipient address rejected: User unknown (in reply to
            RCPT TO command)

        --4C1D2E3F.1700000000/relay.rekey.example
        Content-Description: Delivery report
        Content-Type: message/delivery-status

        Reporting-MTA: dns; relay.rekey.example
        X-Postfix-Queue-ID: 4C1D2E3F
        X-Postfix-Sender: rfc822; bounces+m_0123@bounces.rekey.example
        Arrival-Date: Tue,  1 Dec 2026 10:00:00 +0000 (UTC)

        Final-Recipient: rfc822; jane@example.com
        Original-Recipient: rfc822;jane@example.com
        Action: failed
        Status: 5.1.1
        Remote-MTA: dns; mx.example.com
        Diagnostic-Code: smtp; 550 5.1.1 <jane@example.com>: Recipient address
            rejected: User unknown

        --4C1D2E3F.1700000000/relay.rekey.example
        Content-Description: Undelivered Message Headers
        Content-Type: text/rfc822-headers

        Message-ID: <MESSAGE_ID>
        Date: Tue, 01 Dec 2026 10:00:00 +0000
        From: "Rekey" <no-reply@rekey.example>
        To: <jane@example.com>
        Subject: Reset your password

        --4C1D2E3F.1700000000/relay.rekey.example--

        """

    /// Gmail: the notification text first, then the report; the original comes back whole.
    static let gmail = """
        Delivered-To: bounces+m_0456@bounces.rekey.example
        Return-Path: <>
        From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
        To: bounces+m_0456@bounces.rekey.example
        Auto-Submitted: auto-replied
        Subject: Delivery Status Notification (Failure)
        Content-Type: multipart/report; boundary="000000000000a1b2c3d4e5f6"; report-type=delivery-status
        MIME-Version: 1.0

        --000000000000a1b2c3d4e5f6
        Content-Type: multipart/related; boundary="000000000000a1b2c3d4e5f7"

        --000000000000a1b2c3d4e5f7
        Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f8"

        --000000000000a1b2c3d4e5f8
        Content-Type: text/plain; charset="UTF-8"

        ** Address not found **

        Your message wasn't delivered to someone.who.left@gmail.com because the address couldn't be found, or is unable to receive mail.

        --000000000000a1b2c3d4e5f8
        Content-Type: text/html; charset="UTF-8"

        <html><body><h2>Address not found</h2></body></html>
        --000000000000a1b2c3d4e5f8--
        --000000000000a1b2c3d4e5f7--
        --000000000000a1b2c3d4e5f6
        Content-Type: message/delivery-status

        Reporting-MTA: dns; googlemail.com
        Received-From-MTA: dns; relay.rekey.example
        Arrival-Date: Tue, 01 Dec 2026 02:00:00 -0800 (PST)
        X-Original-Message-ID: <MESSAGE_ID>

        Final-Recipient: rfc822; someone.who.left@gmail.com
        Action: failed
        Status: 5.1.1
        Remote-MTA: dns; gmail-smtp-in.l.google.com. (2a00:1450:400c:c0b::1b, the server
         for the domain gmail.com.)
        Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try
         550-5.1.1 double-checking the recipient's email address for typos or
         550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser
        Last-Attempt-Date: Tue, 01 Dec 2026 02:00:01 -0800 (PST)

        --000000000000a1b2c3d4e5f6
        Content-Type: message/rfc822

        Message-ID: <MESSAGE_ID>
        From: "Rekey" <no-reply@rekey.example>
        To: someone.who.left@gmail.com
        Subject: Reset your password

        (the original body)
        --000000000000a1b2c3d4e5f6--

        """

    /// Exchange Online: a human part in multipart/alternative, the report, then the original's
    /// headers; the diagnostic carries the RESOLVER code. No VERP address here (matched by the
    /// Message-ID alone).
    static let outlook = """
        From: Microsoft Outlook <postmaster@contoso.onmicrosoft.com>
        To: <no-reply@rekey.example>
        Subject: Undeliverable: Reset your password
        Content-Type: multipart/report; report-type=delivery-status;
        \tboundary="b21a3c4d-0e5f-4a6b-8c7d-9e0f1a2b3c4d"
        MIME-Version: 1.0

        --b21a3c4d-0e5f-4a6b-8c7d-9e0f1a2b3c4d
        Content-Type: multipart/alternative; differences=Content-Type;
        \tboundary="e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"

        --e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b
        Content-Type: text/plain; charset="us-ascii"
        Content-Transfer-Encoding: quoted-printable

        Your message to pat@contoso.com couldn't be delivered.=0D
        pat wasn't found at contoso.com.

        --e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b--

        --b21a3c4d-0e5f-4a6b-8c7d-9e0f1a2b3c4d
        Content-Type: message/delivery-status

        Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com
        Received-From-MTA: dns;relay.rekey.example
        Arrival-Date: Tue, 1 Dec 2026 10:00:00 +0000

        Original-Recipient: rfc822;pat@contoso.com
        Final-Recipient: rfc822;pat@contoso.com
        Action: failed
        Status: 5.1.10
        Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

        --b21a3c4d-0e5f-4a6b-8c7d-9e0f1a2b3c4d
        Content-Type: text/rfc822-headers

        Message-ID:
         <MESSAGE_ID>
        From: Rekey <no-reply@rekey.example>
        To: <pat@contoso.com>
        Subject: Reset your password

        --b21a3c4d-0e5f-4a6b-8c7d-9e0f1a2b3c4d--

        """

    /// Yahoo: a full mailbox is a temporary state (4.2.2 with Action: delayed) — recorded, not
    /// a bounce; its report comes base64-encoded.
    static let yahooDelayed = """
        From: MAILER-DAEMON@yahoo.com
        To: bounces+m_0789@bounces.rekey.example
        Subject: Delivery delayed
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type="delivery-status"; boundary="----=_Part_1"

        ------=_Part_1
        Content-Type: text/plain

        Your message has not been delivered yet; the mailbox is full. We will keep trying.

        ------=_Part_1
        Content-Type: message/delivery-status
        Content-Transfer-Encoding: base64

        \(Self.base64("""
        Reporting-MTA: dns; mta1000.mail.gq1.yahoo.com

        Final-Recipient: rfc822; kim@yahoo.com
        Action: delayed
        Status: 4.2.2
        Remote-MTA: dns; mta7.am0.yahoodns.net
        Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

        """))
        ------=_Part_1
        Content-Type: text/rfc822-headers

        Message-ID: <MESSAGE_ID>
        Subject: Reset your password

        ------=_Part_1--

        """

    /// Yahoo's plain-text bounce (no multipart/report): not a standard report, so kept unparsed.
    static let yahooPlain = """
        From: MAILER-DAEMON@yahoo.com
        To: bounces+m_0789@bounces.rekey.example
        Subject: Failure Notice

        Sorry, we were unable to deliver your message to the following address.

        <kim@yahoo.com>:
        554: delivery error: dd This user doesn't have a yahoo.com account (kim@yahoo.com)

        """

    /// A complaint from Yahoo's feedback loop (ARF, RFC 5965): the recipient pressed "Spam".
    static let yahooComplaint = """
        From: feedbackloop@yahoo.com
        To: fbl@rekey.example
        Subject: FW: Reset your password
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=feedback-report;
        \tboundary="_----------=_1700000000"

        --_----------=_1700000000
        Content-Type: text/plain; charset="US-ASCII"

        This is an email abuse report for an email message received from IP 192.0.2.10.

        --_----------=_1700000000
        Content-Type: message/feedback-report

        Feedback-Type: abuse
        User-Agent: Yahoo!-Mail-Feedback/2.0
        Version: 1
        Original-Mail-From: <bounces+m_0999@bounces.rekey.example>
        Original-Rcpt-To: <kim@yahoo.com>
        Arrival-Date: Tue, 01 Dec 2026 10:00:00 +0000
        Source-IP: 192.0.2.10

        --_----------=_1700000000
        Content-Type: message/rfc822
        Content-Disposition: inline

        Message-ID: <MESSAGE_ID>
        From: Rekey <no-reply@rekey.example>
        To: kim@yahoo.com
        Subject: Reset your password

        (the body, often redacted)
        --_----------=_1700000000--

        """

    static func base64(_ text: String) -> String {
        let data = Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8)
        var lines: [String] = []
        var encoded = Substring(Data(data).base64EncodedString())
        while !encoded.isEmpty {
            lines.append(String(encoded.prefix(76)))
            encoded = encoded.dropFirst(76)
        }
        return lines.joined(separator: "\n")
    }
}
