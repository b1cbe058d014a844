// Sends notices by SMTP (nodemailer): implicit TLS, STARTTLS (required, never downgraded) or
// plain for a local relay; optional credentials; bounded timeouts so a dead server delays a
// notice, never a reconcile for long.
import nodemailer, { type Transporter } from 'nodemailer';
import type { Message } from './message.ts';

export interface SmtpOptions {
  host: string;
  port: number;
  /** tls: implicit TLS (465); starttls: STARTTLS required (587); none: plain (a relay on loopback). */
  security: 'tls' | 'starttls' | 'none';
  from: string;
  auth?: { user: string; pass: string } | undefined;
  /** Extra CAs to trust for the server's certificate (PEM). */
  caPems?: string[] | undefined;
  timeoutMs?: number;
}

export class EmailSender {
  private readonly transport: Transporter;
  private readonly from: string;

  constructor(options: SmtpOptions) {
    const timeout = options.timeoutMs ?? 10_000;
    this.from = options.from;
    this.transport = nodemailer.createTransport({
      host: options.host,
      port: options.port,
      secure: options.security === 'tls',
      requireTLS: options.security === 'starttls',
      ignoreTLS: options.security === 'none',
      ...(options.auth ? { auth: options.auth } : {}),
      tls: { minVersion: 'TLSv1.2', ...(options.caPems?.length ? { ca: options.caPems } : {}) },
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
      pool: true,
      maxConnections: 2,
    });
  }

  async send(message: Message): Promise<void> {
    await this.transport.sendMail({ from: this.from, to: message.to, subject: message.subject, text: message.text, messageId: message.messageId });
  }

  close(): void {
    this.transport.close();
  }
}
