"""The monitor daemon as composition: probes on a schedule, results written, one alert leader
evaluating rules and sending notifications, the providers' official status pages polled."""
